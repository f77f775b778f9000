package integration_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// TestMintedIDs: a request without a session gets a new ID in the backend's
// format, sent upstream in the Cookie header and set on the response.
func TestMintedIDs(t *testing.T) {
	var upstream = make(chan string, 1)
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstream <- r.Header.Get("Cookie")
	}))
	t.Cleanup(echo.Close)
	formats := []struct {
		mint string
		want *regexp.Regexp
	}{
		{"php", regexp.MustCompile(`^[0-9a-f]{32}$`)},
		{"php 48 6", regexp.MustCompile(`^[0-9a-zA-Z,-]{48}$`)},
		{"hex", regexp.MustCompile(`^[0-9a-f]{32}$`)},
		{"base64url", regexp.MustCompile(`^[0-9A-Za-z_-]{22}$`)},
	}
	for _, f := range formats {
		t.Run(f.mint, func(t *testing.T) {
			loadCaddyfile(t, fmt.Sprintf(":9080 {\n\tsession_queue {\n\t\tmint %s\n\t}\n\treverse_proxy %s\n}\n", f.mint, echo.URL))
			seen := map[string]bool{}
			for range 3 {
				resp, err := get(t, "/", "theme=dark")
				if err != nil {
					t.Fatal(err)
				}
				readBody(resp)
				sent := <-upstream
				var minted *http.Cookie
				for _, c := range resp.Cookies() {
					if c.Name == "PHPSESSID" {
						minted = c
					}
				}
				if minted == nil {
					t.Fatalf("no PHPSESSID set; headers %v", resp.Header)
				}
				if !f.want.MatchString(minted.Value) || seen[minted.Value] {
					t.Fatalf("minted %q: malformed or repeated", minted.Value)
				}
				seen[minted.Value] = true
				if sent != "theme=dark; PHPSESSID="+minted.Value {
					t.Fatalf("upstream Cookie %q does not carry the minted ID", sent)
				}
				if !minted.HttpOnly || minted.SameSite != http.SameSiteLaxMode || minted.Path != "/" || minted.Secure {
					t.Fatalf("minted cookie attributes: %q", resp.Header.Get("Set-Cookie"))
				}
			}
		})
	}
}

// TestPHPAcceptsMintedID: PHP, with session.use_strict_mode off as it
// ships, adopts the ID minted in the proxy.
func TestPHPAcceptsMintedID(t *testing.T) {
	b := startPHP(t)
	loadCaddyfile(t, b.site(t, b.redisPool, "session_queue {\n\tmint php\n}"))
	resp, err := get(t, "/start.php", "")
	if err != nil {
		t.Fatal(err)
	}
	body := strings.TrimSpace(readBody(resp))
	var minted string
	for _, c := range resp.Cookies() {
		if c.Name == "PHPSESSID" {
			minted = c.Value
		}
	}
	if minted == "" || body != minted {
		t.Fatalf("PHP's session_id() %q, minted cookie %q: PHP did not adopt the minted ID", body, minted)
	}
	if n := readCounter(t, "/read.php", "PHPSESSID="+minted); n != 0 {
		t.Fatalf("the minted session's counter is %d, want 0 (start.php wrote it)", n)
	}
}
