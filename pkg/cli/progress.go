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
}

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
	fmt.Fprintf(p.w, "%s %s\n", p.now().Format("15:04:05"), msg)
}

// Done ends a live line.
func (p *Progress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.last != "" {
		fmt.Fprintln(p.w)
	}
	p.last = ""
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
