package caddymodule

import (
	"errors"
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/sessionqueue/caddy-session-queue/idgen"
)

func init() {
	caddy.RegisterModule(LaravelDecrypt{})
}

// decryptNamespace is where the modules of `decrypt` live, one per format
// of encrypted session cookie.
const decryptNamespace = "http.handlers.session_queue.decrypt"

// LaravelDecrypt reads the session ID out of Laravel's encrypted session
// cookie (EncryptCookies, Laravel 8 and later; AES-128/256-CBC with its
// HMAC-SHA256, or AES-128/256-GCM), and encrypts a rewritten one the way
// Laravel does.
type LaravelDecrypt struct {
	// Keys are Laravel's APP_KEY, then any APP_PREVIOUS_KEYS, as in
	// Laravel's .env: "base64:" and the base64 of a 16- or 32-byte key.
	// Placeholders are resolved once, at provisioning: write
	// "{env.APP_KEY}" or "{file./path/to/key}" rather than the key itself,
	// so that it stays out of the config. Each entry may hold several keys
	// separated by commas, as APP_PREVIOUS_KEYS does, and the entries
	// after the first may resolve to nothing (no previous keys).
	Keys []string `json:"keys,omitempty"`

	laravel *idgen.Laravel
}

// CaddyModule returns the Caddy module information.
func (LaravelDecrypt) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  decryptNamespace + ".laravel",
		New: func() caddy.Module { return new(LaravelDecrypt) },
	}
}

// Provision resolves the keys' placeholders and checks them. Errors name a
// key by its position only.
func (d *LaravelDecrypt) Provision(caddy.Context) error {
	if len(d.Keys) == 0 {
		return errors.New("laravel: needs Laravel's APP_KEY, e.g. {env.APP_KEY}")
	}
	repl := caddy.NewReplacer()
	var keys []string
	for i, entry := range d.Keys {
		resolved, err := repl.ReplaceOrErr(entry, i == 0, true)
		if err != nil {
			return fmt.Errorf("laravel: keys entry %d: %v", i+1, err)
		}
		for key := range strings.SplitSeq(resolved, ",") {
			if key = strings.TrimSpace(key); key != "" {
				keys = append(keys, key)
			}
		}
	}
	l, err := idgen.NewLaravel(keys)
	if err != nil {
		return fmt.Errorf("laravel: %v", err)
	}
	d.laravel = l
	return nil
}

// Decrypt implements idgen.CookieCipher.
func (d *LaravelDecrypt) Decrypt(cookie, value string) (string, error) {
	return d.laravel.Decrypt(cookie, value)
}

// Encrypt implements idgen.CookieCipher.
func (d *LaravelDecrypt) Encrypt(cookie, id string) (string, error) {
	return d.laravel.Encrypt(cookie, id)
}

// UnmarshalCaddyfile reads `laravel <app_key> [<previous_key>...]`, the
// arguments of `decrypt`.
func (d *LaravelDecrypt) UnmarshalCaddyfile(disp *caddyfile.Dispenser) error {
	disp.Next() // the format's name
	d.Keys = disp.RemainingArgs()
	if len(d.Keys) == 0 {
		return disp.Errf("session_queue: decrypt: laravel needs Laravel's APP_KEY, e.g. {env.APP_KEY}")
	}
	if disp.NextBlock(disp.Nesting()) {
		return disp.Errf("session_queue: decrypt: laravel takes no block")
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner     = (*LaravelDecrypt)(nil)
	_ caddyfile.Unmarshaler = (*LaravelDecrypt)(nil)
	_ idgen.CookieCipher    = (*LaravelDecrypt)(nil)
)

// loadDecrypt loads the `decrypt` module, if configured.
func (h *Handler) loadDecrypt(ctx caddy.Context) (idgen.CookieCipher, error) {
	if h.DecryptRaw == nil {
		return nil, nil
	}
	if h.Mint != nil {
		return nil, errors.New("session_queue: decrypt: cannot be used with mint: the backend makes the IDs of encrypted cookies")
	}
	mod, err := ctx.LoadModule(h, "DecryptRaw")
	if err != nil {
		return nil, fmt.Errorf("session_queue: decrypt: %v", err)
	}
	cookieCipher, ok := mod.(idgen.CookieCipher)
	if !ok {
		return nil, fmt.Errorf("session_queue: decrypt: module %T cannot decrypt cookies", mod)
	}
	return cookieCipher, nil
}
