package istio

import (
	"os/exec"
	"syscall"
)

// detach runs the companion in a process group of its own (see detach_unix.go).
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP}
}
