package devenv

import "syscall"

// dieWithParent has the kernel kill a child process when the process that
// started it dies, so a test binary killed by its timeout does not leave a
// kube-controller-manager retrying a gone API server forever.
func dieWithParent(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGKILL }
