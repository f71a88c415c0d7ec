package main

import (
	"context"
	"math/rand/v2"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"tessera.dev/tessera/hack/bench/benchkit"
	"tessera.dev/tessera/pkg/topology"
)

type bench struct {
	o options
	*benchkit.Stack

	shapes map[string]*topology.Topology
	nodes  []*node
	byName map[string]*node
	// ideal is the ideal bus bandwidth of a job, by its GPU count, under
	// the link-table model; idealNCCL under the measured one.
	ideal, idealNCCL map[int]float64
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0)) }

func (b *bench) podGroup(ctx context.Context, ns, name string, minMember int) error {
	return b.CR.Create(ctx, &schedv1alpha1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       schedv1alpha1.PodGroupSpec{MinMember: int32(minMember), ScheduleTimeoutSeconds: ptr.To[int32](60)},
	})
}

// deletePods deletes the named pods at once (grace 0, as kwok's pods hold
// nothing to drain).
func (b *bench) deletePods(ctx context.Context, ns string, names []string) error {
	return benchkit.Parallel(len(names), 8, func(i int) error {
		err := b.Client.CoreV1().Pods(ns).Delete(ctx, names[i], metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		return ctrlclient.IgnoreNotFound(err)
	})
}
