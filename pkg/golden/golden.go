// Package golden compares test output with files under testdata/, refreshed with UPDATE_GOLDEN=1
// (`make golden`). An env var, not a -update flag: `go test ./...` passes flags to every package.
package golden

import (
	"os"
	"path/filepath"
	"testing"
)

// Assert compares got with testdata/<name>, or rewrites the file when UPDATE_GOLDEN=1.
func Assert(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if os.Getenv("UPDATE_GOLDEN") == "1" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden %s: %v (run `make golden` to create it)", path, err)
	}
	if string(want) != string(got) {
		t.Errorf("output differs from %s (run `make golden` if the change is intended)\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}
