//go:build linux

package labrun

import (
	"os/exec"
	"runtime"
	"syscall"
)

// startTied starts cmd so that it is sent SIGTERM when this process ends,
// however it ends (kill -9 included): Linux's parent-death signal, so a
// lab killed mid-run leaves no `holdfast serve` behind. The signal follows
// the thread that forked the child, not the process, and Go ends threads
// it no longer needs; so the child is forked from a goroutine locked to
// its thread, which stays until the child has exited (the thread ends
// with the goroutine, never unlocked). cmd.Wait's result goes to done.
func startTied(cmd *exec.Cmd, done chan<- error) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		done <- cmd.Wait()
	}()
	return <-started
}
