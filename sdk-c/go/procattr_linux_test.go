package leasehold

import (
	"os/exec"
	"syscall"
)

// dieWithUs makes the coordinator get SIGKILL if the test process dies without cleaning up (a
// crash skips TestMain's deferred kill).
func dieWithUs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
