package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Scenario rows go into the generated table (replacing that scenario's old rows), never into a table
// of the prose after it.
func TestAppendRows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.md")
	doc := beginMark + "\n| scenario | x |\n|---|---|\n| 1 a | 1 |\n| 6 new | stale |\n" + endMark + "\n\nprose\n\n| size | ratio |\n|---|---|\n| 2,000 | 0.9 |\n"
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := appendRows(path, []row{{"6 new", "f", "v", "s", "n"}}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	got := string(b)
	want := beginMark + "\n| scenario | x |\n|---|---|\n| 1 a | 1 |\n| 6 new | f | v | s | n |\n" + endMark
	if !strings.HasPrefix(got, want) || strings.Contains(got, "stale") || !strings.HasSuffix(got, "| 2,000 | 0.9 |\n") {
		t.Errorf("got\n%s", got)
	}
}
