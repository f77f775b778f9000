package idgen

import (
	"fmt"
	"net/http"
	"strings"
)

// Decoding is how the backend reads a session ID out of the Cookie header
// and the query string. The queue key must be the ID the backend will use:
// PHP reads `PHPSESSID=abc%641234` as session abcd1234 and `ci.session` as
// the cookie ci_session, so a proxy that compared raw bytes would queue two
// spellings of one session apart and let them overlap in the backend.
type Decoding uint8

const (
	// DecodePHP reads cookies and query parameters as PHP 8 does
	// (main/php_variables.c): the Cookie header is split on ";" only,
	// leading white space is dropped from names, and in names " " and "."
	// become "_" (a name with "[...]" is an array, not a string); names are
	// not percent-decoded (since PHP 8.1.11), values are (%XX only, "+"
	// stays). Query names and values are percent-decoded with "+" as a
	// space, and of repeated names the last wins. Of repeated cookie names
	// the first wins.
	DecodePHP Decoding = iota
	// DecodeCGI reads them as Perl's CGI.pm does (CGI::Cookie->parse,
	// CGI::Util::unescape): the Cookie header is split on ";" and ",",
	// pairs are trimmed, names and values are percent-decoded with "+" as
	// a space (and %uXXXX), a value is cut at its first "&", and of
	// repeated names the first wins, in cookies and in the query string.
	DecodeCGI
	// DecodeNone takes the bytes as sent, as Go's net/http does: split on
	// ";", names and values trimmed, one pair of double quotes removed from
	// a value; the first of repeated names wins.
	DecodeNone
	// DecodePlack reads them as Perl's Plack does (Cookie::Baker's
	// crush_cookie, which Plack::Middleware::Session uses, and
	// Plack::Request's param): the Cookie header is split on ";" only,
	// pairs are trimmed, names and values are percent-decoded ("+" stays),
	// one pair of double quotes is removed from a value, and of repeated
	// names the first wins. Query pairs are split on "&" or ";" and a space
	// after it, "+" is a space, and of repeated names the last wins.
	DecodePlack
)

// ParseDecoding reads the name of a Decoding: "php", "cgi", "plack" or
// "none".
func ParseDecoding(name string) (Decoding, error) {
	switch name {
	case "php":
		return DecodePHP, nil
	case "cgi":
		return DecodeCGI, nil
	case "plack":
		return DecodePlack, nil
	case "none":
		return DecodeNone, nil
	}
	return 0, fmt.Errorf("want php, cgi, plack or none, got %q", name)
}

func (d Decoding) String() string {
	switch d {
	case DecodeCGI:
		return "cgi"
	case DecodePlack:
		return "plack"
	case DecodeNone:
		return "none"
	}
	return "php"
}

// cookiePair is one name=value pair of a Cookie header field: where its
// value starts and ends in the field, and the name as the backend sees it.
type cookiePair struct {
	name                        string
	nameStart, valStart, valEnd int
	// array is a PHP name with an index ("PHPSESSID[]"), whose value PHP
	// keeps as an array: present, but never a session ID.
	array bool
}

// pairs calls yield for each name=value pair of one Cookie field, in order,
// until it returns false. Pairs without "=", and (for PHP) with an empty
// name, are skipped, as the backend skips them.
func (d Decoding) pairs(line string, yield func(cookiePair) bool) {
	for start := 0; start < len(line); {
		end := start + strings.IndexAny(line[start:], d.separators())
		if end < start {
			end = len(line)
		}
		part := line[start:end]
		next := end + 1
		if eq := strings.IndexByte(part, '='); eq >= 0 {
			p, ok := d.pair(part, eq)
			if ok {
				p.nameStart += start
				p.valStart += start
				p.valEnd += start
				if !yield(p) {
					return
				}
			}
		}
		start = next
	}
}

func (d Decoding) separators() string {
	if d == DecodeCGI {
		return ";,"
	}
	return ";"
}

// pair reads the pair part, whose first "=" is at eq; value offsets are
// relative to part.
func (d Decoding) pair(part string, eq int) (cookiePair, bool) {
	switch d {
	case DecodePHP:
		nameStart := 0
		for nameStart < eq && isCSpace(part[nameStart]) {
			nameStart++
		}
		if nameStart == eq {
			return cookiePair{}, false
		}
		name, array := phpName(part[nameStart:eq])
		return cookiePair{name: name, array: array, nameStart: nameStart, valStart: eq + 1, valEnd: len(part)}, true
	case DecodeCGI:
		// CGI.pm trims the pair, then splits at the first "=".
		lead := len(part) - len(strings.TrimLeft(part, perlSpace))
		if lead > eq {
			return cookiePair{}, false
		}
		name := unescape(part[lead:eq], true, true)
		return cookiePair{name: name, nameStart: lead, valStart: eq + 1, valEnd: len(strings.TrimRight(part, perlSpace))}, true
	case DecodePlack:
		// Cookie::Baker trims the pair, then splits at the first "=".
		lead := len(part) - len(strings.TrimLeft(part, perlSpace))
		name := unescape(part[lead:eq], false, false)
		return cookiePair{name: name, nameStart: lead, valStart: eq + 1, valEnd: len(strings.TrimRight(part, perlSpace))}, true
	default:
		nameStart, valStart, valEnd := 0, eq+1, len(part)
		for nameStart < eq && part[nameStart] == ' ' {
			nameStart++
		}
		for valStart < valEnd && part[valStart] == ' ' {
			valStart++
		}
		for valEnd > valStart && part[valEnd-1] == ' ' {
			valEnd--
		}
		return cookiePair{name: strings.TrimSpace(part[:eq]), nameStart: nameStart, valStart: valStart, valEnd: valEnd}, true
	}
}

// perlSpace is what Perl's \s matches in CGI.pm's trimming.
const perlSpace = " \t\n\r\f\v"

// isCSpace is C's isspace, which PHP uses to skip a cookie name's
// leading white space.
func isCSpace(c byte) bool {
	return c == ' ' || (c >= '\t' && c <= '\r')
}

// phpName is the name PHP registers a variable under
// (php_register_variable_ex): leading spaces dropped, " " and "." turned
// into "_" up to a "[", which starts an array index when a "]" follows it
// and is itself turned into "_" otherwise.
func phpName(raw string) (name string, array bool) {
	raw = strings.TrimLeft(raw, " ")
	if strings.IndexByte(raw, ' ') < 0 && strings.IndexByte(raw, '.') < 0 && strings.IndexByte(raw, '[') < 0 {
		return raw, false // most names: no copy
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; c {
		case ' ', '.':
			b.WriteByte('_')
		case '[':
			if strings.IndexByte(raw[i+1:], ']') >= 0 {
				return b.String(), true
			}
			b.WriteByte('_')
			b.WriteString(raw[i+1:])
			return b.String(), false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), false
}

// value decodes a pair's raw value.
func (d Decoding) value(raw string) string {
	switch d {
	case DecodePHP:
		return unescape(raw, false, false)
	case DecodeCGI:
		raw, _, _ = strings.Cut(raw, "&")
		return unescape(raw, true, true)
	case DecodePlack:
		// s/\A"(.*)"\z/$1/: Perl's "." matches no newline.
		if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' && strings.IndexByte(raw, '\n') < 0 {
			raw = raw[1 : len(raw)-1]
		}
		return unescape(raw, false, false)
	}
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		raw = raw[1 : len(raw)-1]
	}
	return raw
}

// Cookie returns the value of the named cookie across every Cookie header
// field of h, as the backend reads it. When the name appears more than
// once, the first wins, as in PHP and CGI.pm (browsers send the cookie of
// the most specific path first). present is true, with an empty value, for
// a first occurrence the backend cannot use as a string (an empty value, or
// a PHP array).
func (d Decoding) Cookie(h http.Header, name string) (value string, present bool) {
	for _, line := range h["Cookie"] {
		d.pairs(line, func(p cookiePair) bool {
			if p.name != name {
				return true
			}
			present = true
			if !p.array {
				value = d.value(line[p.valStart:p.valEnd])
			}
			return false
		})
		if present {
			return value, true
		}
	}
	return "", false
}

// SetCookie makes the request header h carry name=value for the backend:
// the cookie the backend reads (the first of that name, by the same rules as
// Cookie) gets the value, encoded so that the backend decodes it back to
// value, or the cookie is appended when there is none. Other cookies are
// left as they were, in one Cookie field, since FastCGI joins several
// fields with commas.
func (d Decoding) SetCookie(h http.Header, name, value string) {
	encoded := d.encode(value)
	lines := h["Cookie"]
	for i, line := range lines {
		done := false
		d.pairs(line, func(p cookiePair) bool {
			if p.name != name {
				return true
			}
			// The whole pair is rewritten, name included: a PHP array
			// ("PHPSESSID[]") or a spelling the backend folds ("ci.session")
			// becomes the plain name the backend reads.
			lines[i] = line[:p.nameStart] + name + "=" + encoded + line[p.valEnd:]
			done = true
			return false
		})
		if done {
			return
		}
	}
	if len(lines) == 0 {
		h.Set("Cookie", name+"="+encoded)
		return
	}
	lines[len(lines)-1] += "; " + name + "=" + encoded
}

// encode escapes the bytes of an ID that the backend would otherwise decode
// into something else, or read as a separator.
func (d Decoding) encode(id string) string {
	var special string
	switch d {
	case DecodePHP, DecodePlack:
		special = "%"
	case DecodeCGI:
		special = "%+,&"
	default:
		return id
	}
	if !strings.ContainsAny(id, special) {
		return id
	}
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		if c := id[i]; strings.IndexByte(special, c) >= 0 {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Query returns the value of the named query parameter as the backend reads
// it, and whether the query has it.
func (d Decoding) Query(rawQuery, name string) (value string, present bool) {
	for rawQuery != "" {
		var part string
		part, rawQuery, _ = strings.Cut(rawQuery, d.querySeparator(rawQuery))
		if d == DecodePlack {
			rawQuery = strings.TrimPrefix(rawQuery, " ") // split /[&;] ?/
		}
		k, v, _ := strings.Cut(part, "=")
		key := unescape(k, true, d == DecodeCGI)
		if d == DecodePHP {
			var array bool
			if key, array = phpName(key); array {
				if key == name {
					value, present = "", true
				}
				continue
			}
		}
		if key != name {
			continue
		}
		value = unescape(v, true, d == DecodeCGI)
		present = true
		if d != DecodePHP && d != DecodePlack {
			return value, true // CGI.pm's param() and Go take the first
		}
	}
	return value, present
}

// querySeparator is the separator of the next query pair: "&" for PHP and
// Go, "&" or ";" for CGI.pm and Plack.
func (d Decoding) querySeparator(rest string) string {
	if d == DecodeCGI || d == DecodePlack {
		if i := strings.IndexAny(rest, "&;"); i >= 0 {
			return rest[i : i+1]
		}
	}
	return "&"
}

// unescape decodes %XX, with plus "+" as a space, and with percentU
// CGI.pm's %uXXXX as UTF-8; a "%" not followed by hex digits stays as it
// is, as in PHP and Perl.
func unescape(s string, plus, percentU bool) string {
	next := nextEscape(s, plus)
	if next < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s)) // decoding never lengthens
	for next >= 0 {
		b.WriteString(s[:next])
		s = s[next:]
		switch {
		case s[0] == '+':
			b.WriteByte(' ')
			s = s[1:]
		case len(s) >= 3 && isHex(s[1]) && isHex(s[2]):
			b.WriteByte(unhex(s[1])<<4 | unhex(s[2]))
			s = s[3:]
		case percentU && len(s) >= 6 && (s[1] == 'u' || s[1] == 'U') &&
			isHex(s[2]) && isHex(s[3]) && isHex(s[4]) && isHex(s[5]):
			b.WriteRune(rune(unhex(s[2]))<<12 | rune(unhex(s[3]))<<8 | rune(unhex(s[4]))<<4 | rune(unhex(s[5])))
			s = s[6:]
		default:
			b.WriteByte('%')
			s = s[1:]
		}
		next = nextEscape(s, plus)
	}
	b.WriteString(s)
	return b.String()
}

// nextEscape is where the next "%", or with plus "+", is in s, or -1.
// Long values (encrypted cookies) have few: they are copied in runs.
func nextEscape(s string, plus bool) int {
	i := strings.IndexByte(s, '%')
	if plus {
		if j := strings.IndexByte(s, '+'); j >= 0 && (i < 0 || j < i) {
			i = j
		}
	}
	return i
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
