//go:build !windows

package istio

import (
	"os/exec"
	"syscall"
)

// detach runs the companion in a process group of its own: a Ctrl-C at the terminal reaches the
// plugin alone, whose runner decides (stop after the work in flight, or abort through the context),
// instead of killing the analysis mid-gate, which the gate would read as a failure and roll back.
func detach(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }
