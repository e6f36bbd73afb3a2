package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// isTerminal is swapped by tests: a prompt needs a person at a terminal.
var isTerminal = func(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// IsTerminal says a person could answer a question read from in.
func IsTerminal(in io.Reader) bool { return isTerminal(in) }

// Ask puts a yes/no question on errOut when in is a terminal and reads the answer; asked is false
// without a terminal, where nobody could answer and nothing waits.
func Ask(in io.Reader, errOut io.Writer, question string) (yes, asked bool) {
	yes, asked, _ = AskWithin(in, errOut, question, 0)
	return yes, asked
}

// AskWithin is Ask that gives up after timeout (0: waits as long as it takes): timedOut then says
// nobody answered, which is never a yes.
func AskWithin(in io.Reader, errOut io.Writer, question string, timeout time.Duration) (yes, asked, timedOut bool) {
	yes, asked, timedOut, _ = AskUntil(in, errOut, question, timeout, nil)
	return yes, asked, timedOut
}

// AskUntil is AskWithin that also gives up when stop closes (the step was told to stop, as by Ctrl-C at
// the prompt): stopped then says so, which is never a yes.
func AskUntil(in io.Reader, errOut io.Writer, question string, timeout time.Duration, stop <-chan struct{}) (yes, asked, timedOut, stopped bool) {
	if !isTerminal(in) {
		return false, false, false, false
	}
	fmt.Fprintf(errOut, "%s [y/N] ", question)
	answer := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(in).ReadString('\n')
		answer <- line
	}()
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	select {
	case line := <-answer:
		return strings.HasPrefix(strings.ToLower(strings.TrimSpace(line)), "y"), true, false, false
	case <-expired:
		fmt.Fprintln(errOut)
		return false, true, true, false
	case <-stop:
		fmt.Fprintln(errOut)
		return false, true, false, true
	}
}
