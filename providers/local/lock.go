package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// lockCluster takes <StateDir>/<cluster>/.lock. It serialises allocation and
// node directory changes between goroutines and between processes.
func (p *Provider) lockCluster(ctx context.Context, cluster string) (unlock func(), err error) {
	return p.lock(ctx, filepath.Join(p.clusterDir(cluster), ".lock"))
}

// lockState takes <StateDir>/.lock, used only to allocate a cluster's
// address pair.
func (p *Provider) lockState(ctx context.Context) (unlock func(), err error) {
	return p.lock(ctx, filepath.Join(p.dir, ".lock"))
}

// lock takes an exclusive flock on path, waiting until ctx is done. Inside one
// process a semaphore per path queues goroutines (flock also excludes them,
// since every call opens its own file description, but would make them poll).
func (p *Provider) lock(ctx context.Context, path string) (func(), error) {
	p.mu.Lock()
	sem, ok := p.sems[path]
	if !ok {
		sem = make(chan struct{}, 1)
		p.sems[path] = sem
	}
	p.mu.Unlock()
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
	}
	release := func() { <-sem }
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		release()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		release()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	fd := int(f.Fd())
	d := time.Millisecond
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			release()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			release()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-t.C:
		}
		if d < 50*time.Millisecond {
			d *= 2
		}
	}
	return func() {
		_ = syscall.Flock(fd, syscall.LOCK_UN)
		f.Close()
		release()
	}, nil
}
