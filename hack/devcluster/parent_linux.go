package main

import "syscall"

// dieWithParent asks the kernel to send SIGTERM when the parent (make, a
// test harness) dies, so a killed parent does not leave a control plane
// running with nobody to stop it: SIGTERM runs the normal cleanup.
func dieWithParent() {
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0)
}
