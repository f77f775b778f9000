package idgen

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestMinterFormats(t *testing.T) {
	tests := []struct {
		format   string
		length   int
		bits     int
		wantLen  int
		alphabet string
	}{
		{"php", 0, 0, 32, "0123456789abcdef"},
		{"php", 26, 5, 26, "0123456789abcdefghijklmnopqrstuv"},
		{"php", 22, 6, 22, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ,-"},
		{"php", 256, 4, 256, "0123456789abcdef"},
		{"hex", 0, 0, 32, "0123456789abcdef"},
		{"hex", 40, 0, 40, "0123456789abcdef"},
		{"hex", 256, 0, 256, "0123456789abcdef"},
		{"base64url", 0, 0, 22, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"},
		{"base64url", 43, 0, 43, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"},
		{"base64url", 256, 0, 256, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"},
	}
	for _, tt := range tests {
		m, err := NewMinter(tt.format, tt.length, tt.bits)
		if err != nil {
			t.Fatalf("NewMinter(%q, %d, %d): %v", tt.format, tt.length, tt.bits, err)
		}
		// Over 2000 draws every character of a 64-letter alphabet turns
		// up (the chance that one is missing is below 1e-10).
		used := make(map[rune]bool)
		for range 2000 {
			id := m.Mint()
			if len(id) != tt.wantLen {
				t.Fatalf("%s/%d: len(Mint()) = %d, want %d", tt.format, tt.length, len(id), tt.wantLen)
			}
			if err := Validate(id); err != nil {
				t.Fatalf("%s/%d: Mint() = %q fails Validate: %v", tt.format, tt.length, id, err)
			}
			for _, c := range id {
				if !strings.ContainsRune(tt.alphabet, c) {
					t.Fatalf("%s/%d: Mint() = %q has %q, outside %q", tt.format, tt.length, id, c, tt.alphabet)
				}
				used[c] = true
			}
		}
		if len(used) != len(tt.alphabet) {
			t.Errorf("%s/%d/%d: %d of %d characters ever used", tt.format, tt.length, tt.bits, len(used), len(tt.alphabet))
		}
	}
}

// TestMinterBase64URLCanonical checks that a base64url ID is the strict
// encoding of whole bytes, so that even a backend that decodes its IDs
// strictly accepts it.
func TestMinterBase64URLCanonical(t *testing.T) {
	for _, length := range []int{22, 23, 24, 26, 27, 28, 43, 255, 256} {
		m, err := NewMinter("base64url", length, 0)
		if err != nil {
			t.Fatalf("NewMinter(base64url, %d): %v", length, err)
		}
		for range 200 {
			id := m.Mint()
			raw, err := base64.RawURLEncoding.Strict().DecodeString(id)
			if err != nil {
				t.Fatalf("length %d: %q is not strict unpadded base64url: %v", length, id, err)
			}
			if bits := len(raw) * 8; bits < 128 {
				t.Fatalf("length %d carries %d bits", length, bits)
			}
		}
	}
}

func TestMinterUnique(t *testing.T) {
	for _, format := range []string{"php", "hex", "base64url"} {
		m, err := NewMinter(format, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		seen := make(map[string]bool)
		for range 100_000 {
			id := m.Mint()
			if seen[id] {
				t.Fatalf("%s: %q minted twice", format, id)
			}
			seen[id] = true
		}
	}
}

func TestNewMinterErrors(t *testing.T) {
	tests := []struct {
		format       string
		length, bits int
		want         string
	}{
		{"uuid", 0, 0, `unknown format "uuid": want php, hex or base64url`},
		{"PHP", 0, 0, `unknown format "PHP"`},
		{"", 0, 0, `unknown format ""`},
		{"php", 21, 0, "php: length must be between 22 and 256, as PHP's session.sid_length, got 21"},
		{"php", 257, 0, "got 257"},
		{"php", -1, 0, "got -1"},
		{"php", 0, 3, "php: bits per character must be 4, 5 or 6, as PHP's session.sid_bits_per_character, got 3"},
		{"php", 0, 7, "got 7"},
		{"hex", 31, 0, "hex: length must be between 32 (128 bits) and 256, got 31"},
		{"hex", 257, 0, "got 257"},
		{"hex", 32, 4, "hex: bits per character applies to the php format only"},
		{"base64url", 21, 0, "base64url: length must be between 22 (128 bits) and 256, got 21"},
		{"base64url", 300, 0, "got 300"},
		{"base64url", 25, 0, "base64url: no unpadded base64url string is 25 characters long; use 24 or 26"},
		{"base64url", 0, 6, "base64url: bits per character applies to the php format only"},
	}
	for _, tt := range tests {
		_, err := NewMinter(tt.format, tt.length, tt.bits)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewMinter(%q, %d, %d) = %v, want an error containing %q", tt.format, tt.length, tt.bits, err, tt.want)
		}
	}
}

func BenchmarkMint(b *testing.B) {
	for _, format := range []string{"php", "hex", "base64url"} {
		m, err := NewMinter(format, 0, 0)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(format, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m.Mint()
			}
		})
	}
}
