package idgen

import (
	"strings"
	"testing"
)

// zendPattern keys Zend Server Session Clustering IDs by their last field.
const zendPattern = `^(?:[^-]*-){5}(.+)$`

func TestKeyPattern(t *testing.T) {
	tests := []struct {
		name, pattern, id, want string
	}{
		{"zend", zendPattern, "0a000001-10060-0a000002-10060-3-k3v9s0m2q8", "k3v9s0m2q8"},
		{"zend without backup", zendPattern, "0a000001-10060-00000000-00000000-3-k3v9s0m2q8", "k3v9s0m2q8"},
		{"zend after failover", zendPattern, "0a000002-10060-0a000003-10060-4-k3v9s0m2q8", "k3v9s0m2q8"},
		{"zend hash with dashes", zendPattern, "0a000001-10060-0a000002-10060-3-ab-cd", "ab-cd"},
		{"plain ID does not match", zendPattern, "v9l4b0r2k1mv3qf8tmd6s7j2a5", "v9l4b0r2k1mv3qf8tmd6s7j2a5"},
		{"named group", `^node\d+\.(?P<sid>.+)$`, "node7.abc", "abc"},
		{"unanchored finds the first match", `s=(\w+)`, "xs=abc.s=def", "abc"},
		{"optional group left out", `^(?:x-(\w+)|plain)$`, "plain", "plain"},
		{"empty capture", `^x-(\w*)$`, "x-", "x-"},
		{"empty ID", zendPattern, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := CompileKeyPattern(tt.pattern)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Key(tt.id); got != tt.want {
				t.Fatalf("Key(%q) = %q, want %q", tt.id, got, tt.want)
			}
		})
	}
}

func TestZeroKeyPatternKeysByID(t *testing.T) {
	var p KeyPattern
	if got := p.Key("abc-def"); got != "abc-def" {
		t.Fatalf("zero KeyPattern: Key = %q, want the ID", got)
	}
}

func TestCompileKeyPatternErrors(t *testing.T) {
	tests := map[string]string{
		`^abc$`:          "has 0 capturing groups, want exactly 1",
		`^(?:a)-(?:b)$`:  "has 0 capturing groups",
		`^(a)-(b)$`:      "has 2 capturing groups",
		`^((a)b)$`:       "has 2 capturing groups",
		`^(?P<x>a)(b)$`:  "has 2 capturing groups",
		`^(unclosed$`:    "missing closing )",
		`^(a)\k<named>$`: "invalid escape sequence",
	}
	for expr, want := range tests {
		_, err := CompileKeyPattern(expr)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CompileKeyPattern(%q) = %v, want an error containing %q", expr, err, want)
		}
	}
}

func BenchmarkKeyPattern(b *testing.B) {
	p, err := CompileKeyPattern(zendPattern)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Key("0a000001-10060-0a000002-10060-3-v9l4b0r2k1mv3qf8tmd6s7j2a5")
	}
}
