package integration_test

import (
	"net/http"
	"os"
	"strings"
	"testing"
)

// TestClusterSecretMismatchRefused: two instances share a Redis and a key
// prefix but not the secret. They would name every session differently,
// take their leases side by side and never exclude each other, with
// nothing to show for it. The instance that comes second is refused
// instead, loudly.
func TestClusterSecretMismatchRefused(t *testing.T) {
	dir := backendDir(t)
	sock := startRedis(t, dir)
	b := startOverlapBackend(t, 3)
	sq := clusterDirective(sock, "key_prefix sq:shared:")
	other := strings.Replace(sq, clusterSecret, "another-secret-0123456789abcdef", 1)
	first := startInstance(t, dir, 0, sq, "reverse_proxy "+b.addr)
	second := startInstance(t, dir, 1, other, "reverse_proxy "+b.addr)
	id := newSessionID()
	if status, err := getOn(first, "/", id); err != nil || status != http.StatusOK {
		t.Fatalf("first instance: %d %v", status, err)
	}
	status, err := getOn(second, "/", id)
	if err != nil {
		t.Fatal(err)
	}
	mismatches := metric(t, second, `caddy_session_queue_cluster_secret_mismatches_total{zone="default"}`)
	t.Logf("instance with the other secret: status %d, %v mismatches counted", status, mismatches)
	if status != http.StatusServiceUnavailable {
		t.Fatalf("status %d from the instance with another secret, want 503: its lease would not keep the first instance's requests out", status)
	}
	if mismatches != 1 {
		t.Fatalf("secret mismatches counted = %v, want 1", mismatches)
	}
	logged, _ := os.ReadFile(second.log)
	if !strings.Contains(string(logged), "different secret") {
		t.Fatal("no error logged for the secret mismatch")
	}
	if strings.Contains(string(logged), "another-secret") || strings.Contains(string(logged), id) {
		t.Fatal("the secret or the session ID is in the log")
	}
	// The first instance is unaffected.
	if status, err := getOn(first, "/", newSessionID()); err != nil || status != http.StatusOK {
		t.Fatalf("first instance after the mismatch: %d %v", status, err)
	}
}
