package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// isTerminal is swapped by tests: a prompt needs a person at a terminal.
var isTerminal = func(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Ask puts a yes/no question on errOut when in is a terminal and reads the answer; asked is false
// without a terminal, where nobody could answer and nothing waits.
func Ask(in io.Reader, errOut io.Writer, question string) (yes, asked bool) {
	if !isTerminal(in) {
		return false, false
	}
	fmt.Fprintf(errOut, "%s [y/N] ", question)
	line, _ := bufio.NewReader(in).ReadString('\n')
	return strings.HasPrefix(strings.ToLower(strings.TrimSpace(line)), "y"), true
}

// Confirm is the question before a destructive step: --yes or no terminal goes on (scripts rely on
// the step's own checks), a person at a terminal must answer yes. A "no" is exit 75: the step
// halted with nothing changed, so a runbook's `&&` chain stops there.
func Confirm(in io.Reader, errOut io.Writer, yes bool, question string) error {
	if yes {
		return nil
	}
	ok, asked := Ask(in, errOut, question)
	if asked && !ok {
		return Errorf(ExitGateFailed, "not confirmed: nothing was changed")
	}
	return nil
}
