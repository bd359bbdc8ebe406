//go:build !linux

package main

// dieWithParent has no portable equivalent outside Linux; there Ctrl-C and
// SIGTERM remain the way to stop devcluster.
func dieWithParent() {}
