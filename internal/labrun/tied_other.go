//go:build !linux

package labrun

import "os/exec"

// startTied starts cmd; cmd.Wait's result goes to done. Only Linux ends
// the child when this process is killed (tied_linux.go).
func startTied(cmd *exec.Cmd, done chan<- error) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { done <- cmd.Wait() }()
	return nil
}
