//go:build !linux

package devenv

import "syscall"

// dieWithParent has no portable equivalent outside Linux; there Stop
// remains the way to end the processes started.
func dieWithParent(*syscall.SysProcAttr) {}
