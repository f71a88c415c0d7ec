// Package benchkit is what Tessera's benchmark programs share: a simulated
// cluster (etcd, kube-apiserver and kwok on loopback) with fast clients,
// namespaces to run in, and parallel creation and clean-up.
package benchkit

import (
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/apischeme"
	"tessera.dev/tessera/internal/cluster"
)

// Stack is a running simulated cluster and clients for it.
type Stack struct {
	*cluster.Cluster
	Client kubernetes.Interface
	CR     ctrlclient.Client
	seq    int
}

// Start starts etcd, kube-apiserver and kwok from repo's bin/, with
// Tessera's CRDs, logging into a new work dir named after name. The
// clients allow 1,000 QPS, so that the benchmark itself never paces the
// scheduler under test.
func Start(ctx context.Context, repo, name string) (*Stack, error) {
	workDir, err := os.MkdirTemp("", "tessera-"+name+"-")
	if err != nil {
		return nil, err
	}
	Progress("starting etcd, kube-apiserver and kwok (logs in %s)", workDir)
	c, err := cluster.Start(ctx, cluster.Options{
		BinDir:  filepath.Join(repo, "bin"),
		CRDDirs: []string{filepath.Join(repo, "manifests", "crd")},
		WorkDir: workDir,
	})
	if err != nil {
		return nil, err
	}
	config := c.Config
	config.QPS, config.Burst = 1000, 2000
	s := &Stack{Cluster: c}
	if s.Client, err = kubernetes.NewForConfig(config); err != nil {
		_ = c.Stop()
		return nil, err
	}
	scheme, err := apischeme.New()
	if err != nil {
		_ = c.Stop()
		return nil, err
	}
	if s.CR, err = ctrlclient.New(config, ctrlclient.Options{Scheme: scheme}); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return s, nil
}

// Namespace creates the next bench-NNN namespace, with its default service
// account.
func (s *Stack) Namespace(ctx context.Context) (string, error) {
	s.seq++
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%03d", s.seq)}}
	ns, err := cluster.CreateNamespace(ctx, s.Client, ns)
	if err != nil {
		return "", err
	}
	return ns.Name, nil
}

// DeleteAll deletes every pod of ns at once (kwok's pods hold nothing to
// drain) and waits until they are gone. A delete of thousands of pods can
// outlast the apiserver's request timeout and stop part way: it is sent
// again until none is left.
func (s *Stack) DeleteAll(ctx context.Context, ns string) error {
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := s.Client.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{}); err != nil {
			lastErr = err
		}
		pods, err := s.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{Limit: 1})
		return err == nil && len(pods.Items) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("pods of %s left after deleting them: %w (last delete: %v)", ns, err, lastErr)
	}
	return nil
}

// Parallel runs fn(0..n-1) on workers goroutines and returns the first error.
func Parallel(n, workers int, fn func(int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// Progress reports a step on stderr.
func Progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "==> "+format+"\n", args...)
}

// KeepTopologiesFresh renews the heartbeat of every GPUNodeTopology every
// interval until ctx ends, as the node agents of the simulated nodes would,
// so that a long benchmark never finds its nodes' topology stale.
func (s *Stack) KeepTopologiesFresh(ctx context.Context, interval time.Duration) {
	go func() {
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
			if err := s.RefreshTopologies(ctx); err != nil && ctx.Err() == nil {
				Progress("renewing topology heartbeats: %v", err)
			}
		}
	}()
}

// RefreshTopologies renews the heartbeat of every GPUNodeTopology now.
func (s *Stack) RefreshTopologies(ctx context.Context) error {
	var list tesserav1alpha1.GPUNodeTopologyList
	if err := s.CR.List(ctx, &list); err != nil {
		return err
	}
	now := metav1.Now()
	return Parallel(len(list.Items), 8, func(i int) error {
		t := &list.Items[i]
		t.Status.HeartbeatTime = &now
		return s.CR.Status().Update(ctx, t)
	})
}

// WriteCSV writes rows (the header first) to path, creating its folder.
func WriteCSV(path string, rows [][]string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := csv.NewWriter(f).WriteAll(rows); err != nil {
		_ = f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

// Median is the middle value of v (the upper one of an even count), 0 for
// none.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	return s[len(s)/2]
}
