package nvlink

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	fwk "k8s.io/kube-scheduler/framework"
	clocktesting "k8s.io/utils/clock/testing"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
)

// profileHandle is the part of a profile's framework handle the plugin's
// constructor uses.
type profileHandle struct {
	fwk.Handle
	informers informers.SharedInformerFactory
}

func (h profileHandle) SharedInformerFactory() informers.SharedInformerFactory { return h.informers }

// SharedDRAManager is nil: the test has no DRA.
func (h profileHandle) SharedDRAManager() fwk.SharedDRAManager { return nil }

// Defect 3: the framework builds one plugin per profile; a GPU one profile
// reserved (a gang member waiting at Permit, its annotation not written
// yet) is held for the other, however the other would have guessed it.
func TestProfilesShareOneLedger(t *testing.T) {
	st := shapeStatus(t, "dgx-h100")
	st.HeartbeatTime = &metav1.Time{Time: now}
	feed := StaticTopologies([]*tesserav1alpha1.GPUNodeTopology{{ObjectMeta: metav1.ObjectMeta{Name: "n"}, Status: *st}})
	ledger := NewLedger()
	factory := informers.NewSharedInformerFactory(fake.NewClientset(), 0)
	var training, serving *NVLinkTopology
	for _, into := range []**NVLinkTopology{&training, &serving} {
		pl, err := FactoryWithFeed(feed, ledger, func(fwk.Handle, *NVLinkTopology) {}, nil)(context.Background(), nil, profileHandle{informers: factory})
		if err != nil {
			t.Fatal(err)
		}
		*into = pl.(*NVLinkTopology)
	}
	// The training profile reserved GPUs 0-5 for a pod now assumed on n; a
	// guess for an unknown 6-GPU pod would also say 0-5, so reserve the
	// top six to tell the two apart.
	serving.clock = clocktesting.NewFakeClock(now)
	member := gpuPod("member", 6, "")
	training.reserved.set(member.UID, newAssignment("n", []int{2, 3, 4, 5, 6, 7}, 1000))
	info := nodeInfo("n", 8, nil, member)
	free, _, ok := serving.FreeGPUMilli(info)
	if !ok {
		t.Fatal("serving profile cannot read node n")
	}
	var idle []int
	for p, milli := range free {
		if milli == 1000 {
			idle = append(idle, p)
		}
	}
	if len(idle) != 2 || idle[0] != 0 || idle[1] != 1 {
		t.Errorf("serving profile sees GPUs %v idle, want [0 1]: the training profile holds 2-7", idle)
	}
}
