package caddymodule

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/sessionqueue/caddy-session-queue/idgen"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("session_queue", parseCaddyfile)
	// After forward_auth: a site-level session_queue then wraps handle,
	// route, php_fastcgi and reverse_proxy, and runs after authentication
	// has turned away the requests that would only have waited in vain.
	httpcaddyfile.RegisterDirectiveOrder("session_queue", httpcaddyfile.After, "forward_auth")
}

// parseCaddyfile sets up the handler from Caddyfile tokens. It is given the
// helper so that read_only can refer to the site's @named matchers.
func parseCaddyfile(helper httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	h := new(Handler)
	err := h.unmarshal(helper.Dispenser, helper.MatcherToken)
	return h, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	session_queue [<matcher>] {
//		cookies     <name...>
//		query       <param...>
//		header      <field...>
//		decoding    php|cgi|plack|none
//		decrypt     laravel <app_key> [<previous_key>...]
//		read_only   <matcher>
//		bypass      <matcher> | none
//		max_readers <n>
//		max_waiting <n>
//		max_wait    <duration>
//		retry_after <duration>
//		max_hold    <duration>
//		zone        <name>
//		key_pattern      <regexp>
//		regenerate_grace <duration>|off
//		forward_regenerated on|off
//		track_window     <duration>
//		on_duplicate     log|reject
//		mint             php|hex|base64url [<length> [<bits_per_character>]]
//		cluster redis {
//			address     <host:port | unix/path>
//			username    <user>
//			password    <password>
//			db          <n>
//			tls         [<ca_file>]
//			secret      <secret>
//			key_prefix  <prefix>
//			lease_ttl   <duration>
//			op_timeout  <duration>
//			on_error    reject|local
//		}
//	}
//
// `regenerate_grace off` (or 0) forwards no request that arrives after a
// regeneration; `forward_regenerated off` forwards none at all.
//
// read_only takes a @named matcher, a path, matchers written inline
// (`read_only method GET HEAD`), a block of matchers, or a CEL expression
// in backticks; it may be repeated, and a request matching any of them is a
// reader. bypass takes the same forms and replaces the default bypass of
// websockets and event streams; `bypass none` (a matcher that never
// matches) queues them too. Named
// matchers are only available through the directive. decrypt names the
// format of an encrypted session cookie, a module of the
// http.handlers.session_queue.decrypt namespace, and its arguments; write
// keys as placeholders ({env.APP_KEY}), which are resolved when the config
// is loaded.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return h.unmarshal(d, nil)
}

// matcherToken reads a matcher token (@name, /path or *) and returns its
// matcher set; httpcaddyfile.Helper.MatcherToken is one.
type matcherToken func() (caddy.ModuleMap, bool, error)

func (h *Handler) unmarshal(d *caddyfile.Dispenser, namedMatcher matcherToken) error {
	d.Next() // the directive's name
	if d.NextArg() {
		return d.Errf("session_queue: unexpected argument %q; settings go in a block", d.Val())
	}
	seen := make(map[string]bool)
	for d.NextBlock(0) {
		option := d.Val()
		if seen[option] && option != "read_only" && option != "bypass" {
			return d.Errf("session_queue: %s: specified more than once", option)
		}
		seen[option] = true
		switch option {
		case "cookies", "query", "header":
			names := d.RemainingArgs()
			if len(names) == 0 {
				return d.Errf("session_queue: %s: needs at least one name", option)
			}
			switch option {
			case "cookies":
				h.Cookies = names
			case "query":
				h.Query = names
			case "header":
				h.Header = names
			}

		case "read_only":
			set, err := parseMatcherSet(d, option, namedMatcher)
			if err != nil {
				return err
			}
			h.ReadOnlyRaw = append(h.ReadOnlyRaw, set)

		case "bypass":
			if d.NextArg() {
				if d.Val() == "none" {
					if d.NextArg() {
						return d.Errf("session_queue: bypass: unexpected %q after none", d.Val())
					}
					// A matcher that never matches replaces the default,
					// so websockets and event streams are queued too.
					h.BypassRaw = caddyhttp.RawMatcherSets{{"expression": json.RawMessage(`"false"`)}}
					continue
				}
				d.Prev()
			}
			set, err := parseMatcherSet(d, option, namedMatcher)
			if err != nil {
				return err
			}
			h.BypassRaw = append(h.BypassRaw, set)

		case "max_readers", "max_waiting":
			n, err := intArg(d, option)
			if err != nil {
				return err
			}
			if option == "max_readers" {
				if n < 1 {
					return d.Errf("session_queue: max_readers: must be at least 1, got %d", n)
				}
				h.MaxReaders = n
			} else {
				if n < 1 {
					return d.Errf("session_queue: max_waiting: must be at least 1, got %d", n)
				}
				h.MaxWaiting = n
			}

		case "max_wait", "retry_after", "max_hold":
			dur, err := durationArg(d, option)
			if err != nil {
				return err
			}
			switch option {
			case "max_wait":
				h.MaxWait = dur
			case "retry_after":
				h.RetryAfter = dur
			case "max_hold":
				h.MaxHold = dur
			}

		case "regenerate_grace":
			if d.NextArg() {
				if d.Val() == "off" {
					if d.NextArg() {
						return d.Errf("session_queue: regenerate_grace: unexpected %q after off", d.Val())
					}
					h.RegenerateGrace = new(caddy.Duration)
					continue
				}
				d.Prev()
			}
			dur, err := durationArg(d, option)
			if err != nil {
				return err
			}
			h.RegenerateGrace = &dur

		case "track_window":
			dur, err := durationArg(d, option)
			if err != nil {
				return err
			}
			h.TrackWindow = dur

		case "forward_regenerated":
			v, err := stringArg(d, option, "on or off")
			if err != nil {
				return err
			}
			if v != "on" && v != "off" {
				return d.Errf("session_queue: forward_regenerated: want on or off, got %q", v)
			}
			forward := v == "on"
			h.ForwardRegenerated = &forward

		case "on_duplicate":
			v, err := stringArg(d, option, "log or reject")
			if err != nil {
				return err
			}
			if v != "log" && v != "reject" {
				return d.Errf("session_queue: on_duplicate: want log or reject, got %q", v)
			}
			h.OnDuplicate = v

		case "decoding":
			v, err := stringArg(d, option, "php, cgi, plack or none")
			if err != nil {
				return err
			}
			if _, err := idgen.ParseDecoding(v); err != nil {
				return d.Errf("session_queue: decoding: %v", err)
			}
			h.Decoding = v

		case "decrypt":
			if !d.NextArg() {
				return d.Errf("session_queue: decrypt: needs a format, e.g. laravel {env.APP_KEY}")
			}
			format := d.Val()
			unm, err := caddyfile.UnmarshalModule(d, decryptNamespace+"."+format)
			if err != nil {
				return err
			}
			var warnings []caddyconfig.Warning
			h.DecryptRaw = caddyconfig.JSONModuleObject(unm, "format", format, &warnings)

		case "key_pattern":
			v, err := stringArg(d, option, "a regular expression (quote it if it has spaces)")
			if err != nil {
				return err
			}
			h.KeyPattern = v

		case "mint":
			args := d.RemainingArgs()
			if len(args) == 0 || len(args) > 3 {
				return d.Errf("session_queue: mint: want <format> [<length> [<bits_per_character>]]")
			}
			mint := &MintConfig{Format: args[0]}
			for i, field := range []*int{&mint.Length, &mint.BitsPerCharacter} {
				if len(args) > i+1 {
					n, err := strconv.Atoi(args[i+1])
					if err != nil {
						return d.Errf("session_queue: mint: invalid number %q", args[i+1])
					}
					*field = n
				}
			}
			h.Mint = mint

		case "zone":
			v, err := stringArg(d, option, "a name")
			if err != nil {
				return err
			}
			h.Zone = v

		case "cluster":
			c, err := parseCluster(d)
			if err != nil {
				return err
			}
			h.Cluster = c

		default:
			return d.Errf("session_queue: unrecognized option %q", option)
		}
	}
	return nil
}

// parseMatcherSet reads the matcher set after read_only or bypass.
func parseMatcherSet(d *caddyfile.Dispenser, option string, namedMatcher matcherToken) (caddy.ModuleMap, error) {
	if d.NextArg() {
		token := d.Val()
		d.Prev()
		if strings.HasPrefix(token, "@") || strings.HasPrefix(token, "/") {
			return parseMatcherToken(d, option, token, namedMatcher)
		}
	}
	set, err := caddyhttp.ParseCaddyfileNestedMatcherSet(d)
	if err != nil {
		return nil, d.Errf("session_queue: %s: %v", option, err)
	}
	if len(set) == 0 {
		return nil, d.Errf("session_queue: %s: needs a matcher", option)
	}
	return set, nil
}

// parseMatcherToken reads a @named matcher or a path.
func parseMatcherToken(d *caddyfile.Dispenser, option, token string, namedMatcher matcherToken) (caddy.ModuleMap, error) {
	if namedMatcher == nil {
		return nil, d.Errf("session_queue: %s: matcher %q can only be used in a Caddyfile site", option, token)
	}
	set, _, err := namedMatcher()
	if err != nil {
		return nil, d.Errf("session_queue: %s: %v", option, err)
	}
	if d.NextArg() {
		return nil, d.Errf("session_queue: %s: unexpected %q after matcher %q", option, d.Val(), token)
	}
	return set, nil
}

// stringArg reads the one argument of option, described as what.
func stringArg(d *caddyfile.Dispenser, option, what string) (string, error) {
	if !d.NextArg() {
		return "", d.Errf("session_queue: %s: needs %s", option, what)
	}
	v := d.Val()
	if d.NextArg() {
		return "", d.Errf("session_queue: %s: takes one argument, %s, got also %q", option, what, d.Val())
	}
	return v, nil
}

func intArg(d *caddyfile.Dispenser, option string) (int, error) {
	if !d.NextArg() {
		return 0, d.Errf("session_queue: %s: needs a number", option)
	}
	n, err := strconv.Atoi(d.Val())
	if err != nil {
		return 0, d.Errf("session_queue: %s: invalid number %q", option, d.Val())
	}
	if d.NextArg() {
		return 0, d.Errf("session_queue: %s: takes one number, got also %q", option, d.Val())
	}
	return n, nil
}

func durationArg(d *caddyfile.Dispenser, option string) (caddy.Duration, error) {
	if !d.NextArg() {
		return 0, d.Errf("session_queue: %s: needs a duration", option)
	}
	dur, err := caddy.ParseDuration(d.Val())
	if err != nil {
		return 0, d.Errf("session_queue: %s: invalid duration %q: %v", option, d.Val(), err)
	}
	if dur < 0 {
		return 0, d.Errf("session_queue: %s: must not be negative, got %s", option, d.Val())
	}
	if d.NextArg() {
		return 0, d.Errf("session_queue: %s: takes one duration, got also %q", option, d.Val())
	}
	return caddy.Duration(dur), nil
}

// parseCluster reads `cluster redis { ... }`.
func parseCluster(d *caddyfile.Dispenser) (*ClusterConfig, error) {
	if !d.NextArg() || d.Val() != "redis" {
		return nil, d.Err("session_queue: cluster: needs a backend: cluster redis { ... }")
	}
	if d.NextArg() {
		return nil, d.Errf("session_queue: cluster: unexpected argument %q; settings go in a block", d.Val())
	}
	r := new(RedisCluster)
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		option := "cluster redis " + d.Val()
		if seen[d.Val()] {
			return nil, d.Errf("session_queue: %s: given more than once", option)
		}
		seen[d.Val()] = true
		var err error
		switch d.Val() {
		case "address":
			r.Address, err = stringArg(d, option, "host:port or unix/path")
		case "username":
			r.Username, err = stringArg(d, option, "a user name")
		case "password":
			r.Password, err = stringArg(d, option, "a password")
		case "secret":
			r.Secret, err = stringArg(d, option, "a secret")
		case "key_prefix":
			r.KeyPrefix, err = stringArg(d, option, "a prefix")
		case "db":
			r.DB, err = intArg(d, option)
		case "lease_ttl":
			r.LeaseTTL, err = durationArg(d, option)
		case "op_timeout":
			r.OpTimeout, err = durationArg(d, option)
		case "on_error":
			r.OnError, err = stringArg(d, option, "reject or local")
			if err == nil && r.OnError != "reject" && r.OnError != "local" {
				err = d.Errf("session_queue: %s: want reject or local, got %q", option, r.OnError)
			}
		case "tls":
			r.TLS = new(RedisTLS)
			if d.NextArg() {
				r.TLS.CAFile = d.Val()
				if d.NextArg() {
					err = d.Errf("session_queue: %s: takes at most a CA file, got also %q", option, d.Val())
				}
			}
		default:
			err = d.Errf("session_queue: cluster redis: unrecognized option %q", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return &ClusterConfig{Redis: r}, nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
