package istio

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// companion puts a stand-in for the companion on PATH: a script printing body (after reading the
// options from stdin, as the real one does).
func companion(t *testing.T, body string) {
	t.Helper()
	dir := t.TempDir()
	script := "#!/bin/sh\ncat >/dev/null\n" + body + "\n"
	if err := os.WriteFile(filepath.Join(dir, AnalyzerBinary), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// A companion of another build is refused, naming both builds; one of this build is used.
func TestAnalyzeRefusesACompanionOfAnotherBuild(t *testing.T) {
	companion(t, `echo '{"messages":[],"build":"v9.9.9-abc"}'`)
	if _, err := Analyze(context.Background(), AnalyzeOptions{}); err == nil || !strings.Contains(err.Error(), `build "v9.9.9-abc"`) {
		t.Fatalf("a companion of another build: %v", err)
	}
	companion(t, `echo '{"messages":[],"build":"`+Build()+`"}'`)
	if _, err := Analyze(context.Background(), AnalyzeOptions{}); err != nil {
		t.Fatalf("a companion of this build: %v", err)
	}
}

// The companion runs in a process group of its own, so the terminal's Ctrl-C (sent to the plugin's
// group) never reaches it: the runner alone decides what a Ctrl-C stops.
func TestAnalyzeRunsTheCompanionInItsOwnProcessGroup(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc to read process groups")
	}
	companion(t, `me=$(cut -d' ' -f5 /proc/$$/stat); parent=$(cut -d' ' -f5 /proc/$PPID/stat)
printf '{"messages":[{"code":"%s","level":"Info","message":"%s"}],"build":"`+Build()+`"}' "$me" "$parent"`)
	ms, err := Analyze(context.Background(), AnalyzeOptions{})
	if err != nil || len(ms) != 1 {
		t.Fatalf("%v %+v", err, ms)
	}
	if ms[0].Code == ms[0].Message {
		t.Errorf("the companion shares the plugin's process group %s", ms[0].Code)
	}
}
