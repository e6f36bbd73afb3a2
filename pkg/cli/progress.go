package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"
)

// Progress reports long waits on stderr: a live line on a terminal, timestamped lines otherwise.
type Progress struct {
	mu   sync.Mutex
	w    io.Writer
	tty  bool
	last string
	now  func() time.Time
	// In a log, a changed state is printed at most once per logEvery; the latest one held back is
	// printed when the wait ends.
	printed time.Time
	pending string
}

// logEvery bounds how often a wait's changing state is written to a log (not a terminal).
const logEvery = 2 * time.Second

// NewProgress returns a progress reporter on w.
func NewProgress(w io.Writer) *Progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &Progress{w: w, tty: tty, now: time.Now}
}

// Update shows the current state of a wait; repeated identical states are printed once.
func (p *Progress) Update(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	if msg == p.last {
		return
	}
	p.last = msg
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", msg)
		return
	}
	now := p.now()
	if now.Sub(p.printed) < logEvery {
		p.pending = msg
		return
	}
	p.printed, p.pending = now, ""
	fmt.Fprintf(p.w, "%s %s\n", now.Format("15:04:05"), msg)
}

// Done ends a live line (in a log, prints the last state held back).
func (p *Progress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.last != "" {
		fmt.Fprintln(p.w)
	}
	if !p.tty && p.pending != "" {
		fmt.Fprintf(p.w, "%s %s\n", p.now().Format("15:04:05"), p.pending)
	}
	p.last, p.pending, p.printed = "", "", time.Time{}
}

// Printf prints a line of progress or warning on stderr.
func (p *Progress) Printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.last != "" {
		fmt.Fprintln(p.w)
		p.last = ""
	}
	fmt.Fprintf(p.w, format+"\n", args...)
}
