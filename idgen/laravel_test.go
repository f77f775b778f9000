package idgen

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// laravelVectors are cookies made and read by Laravel 8.83's own
// EncryptCookies middleware (testdata/laravel-vectors.php, run with
// Debian's php-laravel-framework).
type laravelVectors struct {
	Keys    map[string]string `json:"keys"`
	Vectors []struct {
		Cipher, Cookie, ID, Value string
		SetCookie                 string `json:"set_cookie"`
	} `json:"vectors"`
	Refused []struct {
		Why, Cipher, Cookie, Value string
	} `json:"refused"`
	Lenient []struct {
		Why, Cipher, Cookie, ID, Value string
	} `json:"lenient"`
}

func loadLaravelVectors(t testing.TB) laravelVectors {
	t.Helper()
	data, err := os.ReadFile("testdata/laravel-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v laravelVectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Vectors) == 0 || len(v.Refused) == 0 || len(v.Lenient) == 0 {
		t.Fatal("testdata/laravel-vectors.json has no vectors")
	}
	return v
}

func mustLaravel(t testing.TB, keys ...string) *Laravel {
	t.Helper()
	l, err := NewLaravel(keys)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLaravelDecryptsLaravelsCookies(t *testing.T) {
	v := loadLaravelVectors(t)
	for _, vec := range v.Vectors {
		l := mustLaravel(t, v.Keys[vec.Cipher])
		id, err := l.Decrypt(vec.Cookie, vec.Value)
		if err != nil || id != vec.ID {
			t.Errorf("%s %s: got %q, %v; want %q", vec.Cipher, vec.Cookie, id, err, vec.ID)
		}
		// The value is Laravel's for this cookie name only.
		if _, err := l.Decrypt(vec.Cookie+"x", vec.Value); !errors.Is(err, ErrUndecryptable) {
			t.Errorf("%s %s: read as another cookie: %v", vec.Cipher, vec.Cookie, err)
		}
	}
}

func TestLaravelTriesPreviousKeys(t *testing.T) {
	v := loadLaravelVectors(t)
	vec := v.Vectors[0]
	rotated := "base64:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	l := mustLaravel(t, rotated, v.Keys[vec.Cipher])
	if id, err := l.Decrypt(vec.Cookie, vec.Value); err != nil || id != vec.ID {
		t.Fatalf("with the key as previous key: got %q, %v", id, err)
	}
	if _, err := mustLaravel(t, rotated).Decrypt(vec.Cookie, vec.Value); !errors.Is(err, ErrUndecryptable) {
		t.Fatalf("without the key: %v", err)
	}
}

func TestLaravelRefusesWhatLaravelRefuses(t *testing.T) {
	v := loadLaravelVectors(t)
	for _, bad := range v.Refused {
		id, err := mustLaravel(t, v.Keys[bad.Cipher]).Decrypt(bad.Cookie, bad.Value)
		if !errors.Is(err, ErrUndecryptable) {
			t.Errorf("%s: got %q, %v; want ErrUndecryptable", bad.Why, id, err)
			continue
		}
		if strings.Contains(err.Error(), bad.Value) {
			t.Errorf("%s: the error shows the value", bad.Why)
		}
	}
}

// A client may re-encode its own cookie in any way PHP still reads; the
// queue must key it by the same session, or the client could get its
// requests past the queue.
func TestLaravelReadsWhatPHPReads(t *testing.T) {
	v := loadLaravelVectors(t)
	for _, vec := range v.Lenient {
		id, err := mustLaravel(t, v.Keys[vec.Cipher]).Decrypt(vec.Cookie, vec.Value)
		if err != nil || id != vec.ID {
			t.Errorf("%s: got %q, %v; want %q", vec.Why, id, err, vec.ID)
		}
	}
}

func TestLaravelEncryptRoundTrips(t *testing.T) {
	v := loadLaravelVectors(t)
	for _, vec := range v.Vectors {
		l := mustLaravel(t, v.Keys[vec.Cipher])
		// Encrypt follows the mode of the backend's cookies.
		if _, err := l.Decrypt(vec.Cookie, vec.Value); err != nil {
			t.Fatal(err)
		}
		const id = "NewIdAfterLogin0123456789abcdefghijklmno"
		a, err := l.Encrypt(vec.Cookie, id)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := l.Encrypt(vec.Cookie, id)
		if a == b {
			t.Errorf("%s: two encryptions are equal; the IV must be fresh", vec.Cipher)
		}
		raw, _ := base64.StdEncoding.DecodeString(a)
		var payload map[string]string
		if err := json.Unmarshal(raw, &payload); err != nil {
			t.Fatalf("%s: %v", vec.Cipher, err)
		}
		if gcm := strings.HasSuffix(vec.Cipher, "gcm"); gcm != (payload["tag"] != "") || gcm == (payload["mac"] != "") {
			t.Errorf("%s: encrypted as %s", vec.Cipher, raw)
		}
		if got, err := l.Decrypt(vec.Cookie, a); err != nil || got != id {
			t.Errorf("%s: round trip gave %q, %v", vec.Cipher, got, err)
		}
	}
}

func TestLaravelBoundsInput(t *testing.T) {
	v := loadLaravelVectors(t)
	vec := v.Vectors[0]
	l := mustLaravel(t, v.Keys[vec.Cipher])
	long := vec.Value + strings.Repeat("A", MaxEncryptedLength)
	if _, err := l.Decrypt(vec.Cookie, long); !errors.Is(err, ErrUndecryptable) {
		t.Fatalf("over %d bytes: %v", MaxEncryptedLength, err)
	}
	allocs := testing.AllocsPerRun(10, func() { l.Decrypt(vec.Cookie, long) })
	if allocs != 0 {
		t.Errorf("refusing an overlong value allocates %v times", allocs)
	}
}

func TestNewLaravelKeyErrors(t *testing.T) {
	secret := "base64:" + base64.StdEncoding.EncodeToString([]byte("twenty-byte-secret!!"))
	good := "base64:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("g", 32)))
	short := "0123456789abcdef" // a raw 16-byte key, as Laravel accepts
	for _, keys := range [][]string{nil, {""}, {secret}, {good, secret}, {good, short}, {"plain-text-secret"}} {
		_, err := NewLaravel(keys)
		if err == nil {
			t.Errorf("%d keys: no error", len(keys))
			continue
		}
		for _, k := range keys {
			if k != "" && strings.Contains(err.Error(), k) {
				t.Errorf("the error %q shows a key", err)
			}
		}
	}
	if _, err := NewLaravel([]string{short}); err != nil {
		t.Errorf("raw 16-byte key: %v", err)
	}
}

func TestPHPBase64Decode(t *testing.T) {
	for _, c := range []struct {
		in     string
		strict bool
		want   string
		ok     bool
	}{
		{"aGVsbG8=", true, "hello", true},
		{"aGVsbG8", true, "hello", true},
		{"aGVs bG8=\n", true, "hello", true},
		{"aGVsbG8==", true, "", false},
		{"aGVs*bG8=", true, "", false},
		{"aGVsbG8=x", true, "", false},
		{"aGVsb", true, "", false},
		{"aGVs*bG8", false, "hello", true},
		{"a=GVsbG8=x", false, "hello1", true},
		{"aGVsb", false, "hel", true},
	} {
		got, ok := phpBase64Decode(nil, c.in, c.strict)
		if ok != c.ok || (ok && string(got) != c.want) {
			t.Errorf("phpBase64Decode(%q, strict %v) = %q, %v; want %q, %v", c.in, c.strict, got, ok, c.want, c.ok)
		}
	}
}

// FuzzLaravelDecrypt checks that no input panics, and that what decrypts is
// what was encrypted.
func FuzzLaravelDecrypt(f *testing.F) {
	v := loadLaravelVectors(f)
	for _, vec := range v.Vectors {
		f.Add(vec.Value)
	}
	for _, bad := range v.Refused {
		f.Add(bad.Value)
	}
	l := mustLaravel(f, v.Keys["aes-256-cbc"])
	f.Fuzz(func(t *testing.T, value string) {
		id, err := l.Decrypt("laravel_session", value)
		if err == nil && id != v.Vectors[0].ID && id != v.Vectors[1].ID {
			t.Fatalf("decrypted to %q", id)
		}
	})
}

func BenchmarkLaravelDecrypt(b *testing.B) {
	v := loadLaravelVectors(b)
	for _, cipher := range []string{"aes-256-cbc", "aes-256-gcm"} {
		for _, vec := range v.Vectors {
			if vec.Cipher != cipher {
				continue
			}
			l := mustLaravel(b, v.Keys[cipher])
			b.Run(cipher, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := l.Decrypt(vec.Cookie, vec.Value); err != nil {
						b.Fatal(err)
					}
				}
			})
			break
		}
	}
	b.Run("forged", func(b *testing.B) {
		l := mustLaravel(b, v.Keys["aes-256-cbc"])
		b.ReportAllocs()
		for b.Loop() {
			l.Decrypt("laravel_session", v.Refused[0].Value)
		}
	})
}

// TestSourceResponseCookieDecrypts: the Set-Cookie that Laravel sends
// (URL-encoded, encrypted afresh) sets the ID inside it.
func TestSourceResponseCookieDecrypts(t *testing.T) {
	v := loadLaravelVectors(t)
	now := time.Now()
	for _, vec := range v.Vectors {
		src := Source{Cookies: []string{vec.Cookie}, Cipher: mustLaravel(t, v.Keys[vec.Cipher])}
		h := http.Header{"Set-Cookie": {"XSRF-TOKEN=abc; path=/", vec.SetCookie}}
		action, id, err := src.ResponseCookie(h, vec.Cookie, now)
		if action != CookieSet || id != vec.ID || err != nil {
			t.Errorf("%s: got %v %q %v, want set %q", vec.Cipher, action, id, err, vec.ID)
		}
	}
	src := Source{Cipher: mustLaravel(t, v.Keys["aes-256-cbc"])}
	for _, bad := range v.Refused {
		h := http.Header{"Set-Cookie": {"laravel_session=" + url.QueryEscape(bad.Value) + "; path=/"}}
		action, id, err := src.ResponseCookie(h, "laravel_session", now)
		if action != CookieSet || id != "" || !errors.Is(err, ErrUndecryptable) {
			t.Errorf("%s: got %v %q %v, want set, untracked, ErrUndecryptable", bad.Why, action, id, err)
		}
	}
}

// TestSourceSetCookieEncrypts: a rewritten session cookie is encrypted for
// the backend, the other cookies are left as they were.
func TestSourceSetCookieEncrypts(t *testing.T) {
	v := loadLaravelVectors(t)
	l := mustLaravel(t, v.Keys["aes-256-cbc"])
	src := Source{Cookies: []string{"laravel_session"}, Cipher: l}
	h := http.Header{"Cookie": {"XSRF-TOKEN=keep; laravel_session=" + url.QueryEscape(v.Vectors[0].Value) + "; b=2"}}
	const id = "NewIdAfterLogin0123456789abcdefghijklmno"
	if err := src.SetCookie(h, "laravel_session", id); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h.Get("Cookie"), "XSRF-TOKEN=keep; laravel_session=") || !strings.HasSuffix(h.Get("Cookie"), "; b=2") {
		t.Fatalf("Cookie: %s", h.Get("Cookie"))
	}
	value, _ := DecodePHP.Cookie(h, "laravel_session")
	if got, err := l.Decrypt("laravel_session", value); err != nil || got != id {
		t.Fatalf("rewritten cookie decrypts to %q, %v", got, err)
	}
}

// TestSourceExtractDecrypts: with a cipher, the queue key is the ID inside
// the cookie, however it was encrypted; what does not decrypt is refused
// as undecryptable, and the decrypted ID is checked as any ID.
func TestSourceExtractDecrypts(t *testing.T) {
	v := loadLaravelVectors(t)
	l := mustLaravel(t, v.Keys["aes-256-cbc"])
	src := Source{Cookies: []string{"laravel_session"}, Decoding: DecodePHP, Cipher: l}
	extract := func(value string) (Found, bool, error) {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Cookie", "XSRF-TOKEN=x; laravel_session="+url.QueryEscape(value))
		return src.Extract(r)
	}
	const id = "Q2xkH8mYbH0eVt1x9lcMkVg4V2nJ4sY7Jz0aXw3K"
	again, _ := l.Encrypt("laravel_session", id)
	for _, value := range []string{v.Vectors[0].Value, again} {
		if found, ok, err := extract(value); !ok || err != nil || found.ID != id || found.Where() != "cookie laravel_session" {
			t.Errorf("got %+v %v %v, want %q", found, ok, err, id)
		}
	}
	badChars, _ := l.Encrypt("laravel_session", "has space")
	empty, _ := l.Encrypt("laravel_session", "")
	for _, c := range []struct {
		name  string
		value string
		ok    bool
		err   error
	}{
		{"forged", v.Refused[0].Value, true, ErrUndecryptable},
		{"over 4096 bytes", strings.Repeat("A", MaxEncryptedLength+1), true, ErrUndecryptable},
		{"bad characters inside", badChars, true, ErrBadChars},
		{"empty ID inside", empty, false, nil},
	} {
		found, ok, err := extract(c.value)
		if ok != c.ok || !errors.Is(err, c.err) || found.ID != "" {
			t.Errorf("%s: got %+v %v %v, want ok %v, %v", c.name, found, ok, err, c.ok, c.err)
		}
	}
}
