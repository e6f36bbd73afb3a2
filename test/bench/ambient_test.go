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

// A scenario measured again (make bench -only) takes the place of its old rows, and a note above the
// table says so; a second note on the same scenarios replaces the first.
func TestMeasuredAgain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.md")
	doc := beginMark + "\n# B\n\n- The whole run took 1h.\n\n| scenario | figure |\n|---|---|\n| 1 a | 1 |\n| 3 read | old |\n| 3 read | old2 |\n| 6 z | 6 |\n" + endMark + "\n"
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, took := range []string{"1m", "2m"} {
		if err := appendRows(path, []row{{"3 read", "f", "new", "s", "n"}}); err != nil {
			t.Fatal(err)
		}
		if err := noteRun(path, "- Measured again, scenarios 3: took "+took+"."); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(path)
	want := beginMark + "\n# B\n\n- The whole run took 1h.\n- Measured again, scenarios 3: took 2m.\n\n| scenario | figure |\n|---|---|\n| 1 a | 1 |\n| 3 read | f | new | s | n |\n| 6 z | 6 |\n" + endMark + "\n"
	if string(b) != want {
		t.Errorf("got\n%s\nwant\n%s", b, want)
	}
}
