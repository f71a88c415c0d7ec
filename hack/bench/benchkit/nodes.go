package benchkit

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"tessera.dev/tessera/internal/gpunodes"
)

// CreateDGXNodes creates count DGX H100 nodes named h100-NNNN, 16 at a
// time, perRack to a rack, each with the GPUNodeTopology its node agent
// would publish (Tessera's profile places GPUs from it), and waits until
// kwok has made them all Ready.
func (s *Stack) CreateDGXNodes(ctx context.Context, count, perRack int) error {
	Progress("creating %d DGX H100 nodes (%d GPUs)", count, 8*count)
	shape := gpunodes.Shapes["dgx-h100"]
	err := Parallel(count, 16, func(i int) error {
		name := fmt.Sprintf("h100-%04d", i)
		if _, err := s.Client.CoreV1().Nodes().Create(ctx, shape.Node(name, fmt.Sprintf("rack-%03d", i/perRack)), metav1.CreateOptions{}); err != nil {
			return err
		}
		_, err := gpunodes.PublishTopology(ctx, s.CR, name, shape.Name, time.Now())
		return err
	})
	if err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, time.Second, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		nodes, err := s.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		ready := 0
		for _, n := range nodes.Items {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		return ready == count, nil
	})
}

// Binds records when each pod of a namespace was first seen bound.
type Binds struct {
	mu sync.Mutex
	at map[string]time.Time
}

// WatchedNamespace makes a new namespace for a run and starts recording
// its binds (until ctx ends).
func (s *Stack) WatchedNamespace(ctx context.Context) (string, *Binds, error) {
	ns, err := s.Namespace(ctx)
	if err != nil {
		return "", nil, err
	}
	bs, err := s.WatchBinds(ctx, ns)
	return ns, bs, err
}

// WatchBinds starts recording the binds of ns's pods until ctx ends (end it
// when the run is done: the watch stops with it).
func (s *Stack) WatchBinds(ctx context.Context, ns string) (*Binds, error) {
	bs := &Binds{at: map[string]time.Time{}}
	factory := informers.NewSharedInformerFactoryWithOptions(s.Client, 0, informers.WithNamespace(ns))
	record := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			bs.mu.Lock()
			if _, seen := bs.at[p.Name]; !seen {
				bs.at[p.Name] = time.Now()
			}
			bs.mu.Unlock()
		}
	}
	inf := factory.Core().V1().Pods().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: record, UpdateFunc: func(_, o any) { record(o) }}); err != nil {
		return nil, err
	}
	factory.Start(ctx.Done())
	go func() {
		<-ctx.Done()
		factory.Shutdown()
	}()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil, fmt.Errorf("pod informer did not sync")
	}
	return bs, nil
}

// Span returns how many of the named pods were seen bound, and when the
// first and the last of them were.
func (bs *Binds) Span(names []string) (n int, first, last time.Time) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	for _, name := range names {
		if t, ok := bs.at[name]; ok {
			n++
			if first.IsZero() || t.Before(first) {
				first = t
			}
			if t.After(last) {
				last = t
			}
		}
	}
	return n, first, last
}

// QuantilesSince returns, for each quantile q, the time from since to the
// bind of the named pod at rank q by bind time (nearest rank), counting
// unbound pods as the last; 0 where the pod at that rank was never bound.
func (bs *Binds) QuantilesSince(names []string, since time.Time, qs ...float64) []time.Duration {
	bs.mu.Lock()
	waits := make([]time.Duration, 0, len(names))
	for _, name := range names {
		if t, ok := bs.at[name]; ok {
			waits = append(waits, t.Sub(since))
		}
	}
	bs.mu.Unlock()
	slices.Sort(waits)
	out := make([]time.Duration, len(qs))
	for i, q := range qs {
		rank := int(math.Ceil(q*float64(len(names)))) - 1
		if rank >= 0 && rank < len(waits) {
			out[i] = waits[rank]
		}
	}
	return out
}

// Count returns how many of the named pods were seen bound, and when the
// last of them was.
func (bs *Binds) Count(names []string) (int, time.Time) {
	n, _, last := bs.Span(names)
	return n, last
}
