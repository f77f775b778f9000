package caddymodule

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestSetRequestCookie(t *testing.T) {
	tests := []struct {
		name   string
		before []string
		after  string
	}{
		{"only cookie", []string{"PHPSESSID=old"}, "PHPSESSID=new"},
		{"among others", []string{"a=1; PHPSESSID=old; b=2"}, "a=1; PHPSESSID=new; b=2"},
		{"first of duplicates", []string{"PHPSESSID=old; PHPSESSID=other"}, "PHPSESSID=new; PHPSESSID=other"},
		{"spaces kept", []string{"a=1;  PHPSESSID = old ;b=2"}, "a=1;  PHPSESSID =new;b=2"},
		{"second field", []string{"a=1", "PHPSESSID=old"}, "a=1|PHPSESSID=new"},
		{"absent: appended", []string{"a=1"}, "a=1; PHPSESSID=new"},
		{"no cookie header", nil, "PHPSESSID=new"},
		{"prefix is not the name", []string{"XPHPSESSID=x"}, "XPHPSESSID=x; PHPSESSID=new"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			for _, line := range tt.before {
				r.Header.Add("Cookie", line)
			}
			setRequestCookie(r, "PHPSESSID", "new")
			if got := strings.Join(r.Header["Cookie"], "|"); got != tt.after {
				t.Fatalf("Cookie = %q, want %q", got, tt.after)
			}
		})
	}
}
