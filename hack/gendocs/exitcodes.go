package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/cli"
)

// writeExitCodes writes the exit-code table from pkg/cli, so docs and code cannot disagree.
func writeExitCodes(dir string) error {
	var b strings.Builder
	b.WriteString("# Exit codes\n\nEvery subcommand exits with one of these codes; shell runbooks can rely on them.\n\n| code | name | meaning |\n|---|---|---|\n")
	for _, c := range cli.ExitCodes {
		fmt.Fprintf(&b, "| %d | %s | %s |\n", c.Code, c.Name, c.Meaning)
	}
	return os.WriteFile(filepath.Join(dir, "exit-codes.md"), []byte(b.String()), 0o644)
}
