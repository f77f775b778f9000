package caddymodule

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sessionqueue/caddy-session-queue/idgen"
)

// testAppKey is a Laravel APP_KEY for tests only.
var testAppKey = "base64:" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

func TestDecryptCaddyfile(t *testing.T) {
	out, err := adapt(t, `:8080 {
		session_queue {
			cookies laravel_session
			decrypt laravel {env.APP_KEY} {file./run/secrets/old_key}
		}
		respond ok
	}`)
	if err != nil {
		t.Fatal(err)
	}
	want := `"decrypt":{"format":"laravel","keys":["{env.APP_KEY}","{file./run/secrets/old_key}"]}`
	if !strings.Contains(out, want) {
		t.Fatalf("adapted config lacks %s: %s", want, out)
	}
	for src, want := range map[string]string{
		"session_queue {\n decrypt\n}":                     "decrypt: needs a format",
		"session_queue {\n decrypt laravel\n}":             "decrypt: laravel needs Laravel's APP_KEY",
		"session_queue {\n decrypt rot13 key\n}":           "http.handlers.session_queue.decrypt.rot13",
		"session_queue {\n decrypt laravel k {\n x\n }\n}": "decrypt: laravel takes no block",
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error containing %q", src, err, want)
		}
	}
}

func decryptConfig(keys ...string) json.RawMessage {
	raw, _ := json.Marshal(map[string]any{"format": "laravel", "keys": keys})
	return raw
}

// TestDecryptKeysFromPlaceholders: keys are resolved from the environment
// and files when the config is loaded, and decrypt what they encrypt.
func TestDecryptKeysFromPlaceholders(t *testing.T) {
	t.Setenv("SQ_TEST_APP_KEY", testAppKey)
	keyFile := filepath.Join(t.TempDir(), "old_key")
	oldKey := "base64:" + base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))
	if err := os.WriteFile(keyFile, []byte(oldKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := &Handler{Zone: "decrypt-unit", Cookies: []string{"laravel_session"},
		DecryptRaw: decryptConfig("{env.SQ_TEST_APP_KEY}", "{file."+keyFile+"}")}
	if err := provision(t, h); err != nil {
		t.Fatal(err)
	}
	// A cookie made with the previous key decrypts.
	old, err := idgen.NewLaravel([]string{oldKey})
	if err != nil {
		t.Fatal(err)
	}
	const id = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd"
	value, _ := old.Encrypt("laravel_session", id)
	if got, err := h.source.Cipher.Decrypt("laravel_session", value); err != nil || got != id {
		t.Fatalf("previous key: got %q, %v", got, err)
	}
	// APP_PREVIOUS_KEYS is a comma-separated list, and may be unset.
	rotated := "base64:" + base64.StdEncoding.EncodeToString([]byte("0123456789ABCDEF0123456789ABCDEF"))
	t.Setenv("SQ_TEST_PREVIOUS_KEYS", rotated+","+oldKey)
	listed := &Handler{Zone: "decrypt-unit-list", Cookies: []string{"laravel_session"},
		DecryptRaw: decryptConfig("{env.SQ_TEST_APP_KEY}", "{env.SQ_TEST_UNSET_KEYS}", "{env.SQ_TEST_PREVIOUS_KEYS}")}
	if err := provision(t, listed); err != nil {
		t.Fatal(err)
	}
	if got, err := listed.source.Cipher.Decrypt("laravel_session", value); err != nil || got != id {
		t.Fatalf("previous key listed second in APP_PREVIOUS_KEYS: got %q, %v", got, err)
	}
	// And the handler encrypts with the first.
	current, _ := idgen.NewLaravel([]string{testAppKey})
	value, _ = h.source.Cipher.Encrypt("laravel_session", id)
	if got, err := current.Decrypt("laravel_session", value); err != nil || got != id {
		t.Fatalf("encrypted with the first key: got %q, %v", got, err)
	}
}

// TestDecryptProvisionErrors: a missing or malformed key fails the config
// load with a message that names decrypt and never shows a key.
func TestDecryptProvisionErrors(t *testing.T) {
	secret := "base64:" + base64.StdEncoding.EncodeToString([]byte("not-a-valid-length-secret"))
	t.Setenv("SQ_TEST_BAD_KEY", secret)
	t.Setenv("SQ_TEST_APP_KEY", testAppKey)
	for name, h := range map[string]*Handler{
		"no keys":          {DecryptRaw: decryptConfig()},
		"unset variable":   {DecryptRaw: decryptConfig("{env.SQ_TEST_UNSET_KEY}")},
		"wrong length":     {DecryptRaw: decryptConfig("{env.SQ_TEST_BAD_KEY}")},
		"literal bad key":  {DecryptRaw: decryptConfig(secret)},
		"previous key bad": {DecryptRaw: decryptConfig("{env.SQ_TEST_APP_KEY}", secret)},
		"with mint":        {DecryptRaw: decryptConfig("{env.SQ_TEST_APP_KEY}"), Mint: &MintConfig{Format: "php"}},
		"unknown format":   {DecryptRaw: json.RawMessage(`{"format":"rot13"}`)},
	} {
		h.Zone = "decrypt-errors"
		err := provision(t, h)
		if err == nil || !strings.Contains(err.Error(), "session_queue: decrypt") {
			t.Errorf("%s: got %v, want an error naming session_queue: decrypt", name, err)
			continue
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), testAppKey) ||
			strings.Contains(err.Error(), strings.TrimPrefix(secret, "base64:")) {
			t.Errorf("%s: the error shows a key: %v", name, err)
		}
	}
}

// TestDecryptKeysQueueByTheIDInside: two encryptions of one session ID are
// one session; a cookie that does not decrypt is passed on and counted as
// undecryptable, with a hint and without the value.
func TestDecryptKeysQueueByTheIDInside(t *testing.T) {
	h := &Handler{Zone: "decrypt-serve", Cookies: []string{"laravel_session"}, DecryptRaw: decryptConfig(testAppKey)}
	if err := provision(t, h); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.WarnLevel)
	h.logger = zap.New(core)
	laravel, _ := idgen.NewLaravel([]string{testAppKey})
	const id = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd"
	serve := func(value string) string {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Cookie", "laravel_session="+url.QueryEscape(value))
		repl := caddy.NewReplacer()
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
		var upstream string
		next := caddyhttp.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) error {
			upstream = r.Header.Get("Cookie")
			return nil
		})
		if err := h.ServeHTTP(httptest.NewRecorder(), r, next); err != nil {
			t.Fatal(err)
		}
		if upstream != "laravel_session="+url.QueryEscape(value) {
			t.Errorf("the cookie went upstream changed: %s", upstream)
		}
		session, _ := repl.GetString(placeholderSession)
		return session
	}
	for range 2 {
		value, _ := laravel.Encrypt("laravel_session", id)
		if got := serve(value); got != idgen.Hash(id) {
			t.Errorf("queued as session %q, want %q, the hash of the ID inside", got, idgen.Hash(id))
		}
	}
	forged, _ := idgen.NewLaravel([]string{"base64:" + base64.StdEncoding.EncodeToString([]byte("another-key-another-key-another!"))})
	value, _ := forged.Encrypt("laravel_session", id)
	if got := serve(value); got != "" {
		t.Errorf("a cookie made with another key was queued as %q", got)
	}
	if got := h.zone.unqueued.total[unqueuedUndecryptable].Load(); got != 1 {
		t.Errorf("undecryptable counted %d, want 1", got)
	}
	warnings := logs.FilterField(zap.String("reason", "undecryptable")).All()
	if len(warnings) != 1 || !strings.Contains(warnings[0].ContextMap()["hint"].(string), "key") {
		t.Fatalf("warnings: %v", logs.All())
	}
	for _, v := range warnings[0].ContextMap() {
		if s, ok := v.(string); ok && (strings.Contains(s, value[:20]) || strings.Contains(s, id)) {
			t.Errorf("the warning carries the cookie or the ID: %v", warnings[0].ContextMap())
		}
	}
}
