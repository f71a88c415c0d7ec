package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"tessera.dev/tessera/internal/cluster"
	"tessera.dev/tessera/pkg/topology"
)

type bench struct {
	o      options
	c      *cluster.Cluster
	client kubernetes.Interface
	cr     ctrlclient.Client
	seq    int

	shapes map[string]*topology.Topology
	nodes  []*node
	byName map[string]*node
	// ideal is the ideal bus bandwidth of a job, by its GPU count.
	ideal map[int]float64
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0)) }

func (b *bench) namespace(ctx context.Context) (string, error) {
	b.seq++
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%03d", b.seq)}}
	ns, err := cluster.CreateNamespace(ctx, b.client, ns)
	if err != nil {
		return "", err
	}
	return ns.Name, nil
}

func (b *bench) podGroup(ctx context.Context, ns, name string, minMember int) error {
	return b.cr.Create(ctx, &schedv1alpha1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       schedv1alpha1.PodGroupSpec{MinMember: int32(minMember), ScheduleTimeoutSeconds: ptr.To[int32](60)},
	})
}

// deletePods deletes the named pods at once (grace 0, as kwok's pods hold
// nothing to drain).
func (b *bench) deletePods(ctx context.Context, ns string, names []string) error {
	return parallel(len(names), 8, func(i int) error {
		err := b.client.CoreV1().Pods(ns).Delete(ctx, names[i], metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		return ctrlclient.IgnoreNotFound(err)
	})
}

// deleteAll removes every pod of ns and waits until they are gone.
func (b *bench) deleteAll(ctx context.Context, ns string) error {
	if err := b.client.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{}); err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := b.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(pods.Items) == 0, nil
	})
}

// parallel runs fn(0..n-1) on workers goroutines and returns the first error.
func parallel(n, workers int, fn func(int) error) error {
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
