package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// process is a control-plane binary run as a child process, its output kept
// in a log file so a failed test or demo can point at it.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
	// metricsURL is where it serves /metrics, if the stack chose it.
	metricsURL string
}

func startProcess(ctx context.Context, name, logDir, binary string, args ...string) (*process, error) {
	return startProcessWithEnv(ctx, name, logDir, binary, nil, args...)
}

// startProcessWithEnv is startProcess with env added to this process's
// environment.
func startProcessWithEnv(ctx context.Context, name, logDir, binary string, env []string, args ...string) (*process, error) {
	logPath := filepath.Join(logDir, name+".log")
	// Appended to, so that a process restarted under the same name (a
	// scheduler killed and started again) keeps its predecessor's log.
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating log for %s: %w", name, err)
	}
	cmd := exec.Command(binary, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Own process group, so an interrupted demo does not leave it running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", name, binary, err)
	}
	klog.FromContext(ctx).V(1).Info("Started process", "name", name, "pid", cmd.Process.Pid, "log", logPath)
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports an error if the process has already stopped.
func (p *process) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v); see %s", p.name, p.err, p.logPath)
	default:
		return nil
	}
}

// stop asks the process to terminate and kills it after a grace period;
// with no grace, it kills it at once.
func (p *process) stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if grace > 0 {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	var exitErr *exec.ExitError
	if p.err != nil && !errors.As(p.err, &exitErr) {
		return fmt.Errorf("stopping %s: %w", p.name, p.err)
	}
	return nil
}
