// Package queue is Tessera's side of Kueue admission: the
// tessera.dev/topology-fit AdmissionCheck controller, which holds a Workload
// whose quota is reserved until its whole gang fits the cluster's free GPU
// topology now (the same search over published topology the scheduler
// runs), so that "admitted" means "placeable" rather than "Pending with
// scattered GPUs".
package queue

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"
	"sigs.k8s.io/kueue/pkg/util/admissioncheck"
	"sigs.k8s.io/kueue/pkg/workload"
	"sigs.k8s.io/kueue/pkg/workload/finish"
	"sigs.k8s.io/kueue/pkg/workload/patching"

	configv1alpha1 "tessera.dev/tessera/apis/config/v1alpha1"
)

// ControllerName is the AdmissionCheck controllerName this controller
// serves.
const ControllerName = "tessera.dev/topology-fit"

// fieldOwner owns the check states this controller writes.
const fieldOwner = ctrlclient.FieldOwner("tessera-topology-fit")

// TopologyFit evaluates the tessera.dev/topology-fit check of Workloads
// whose quota Kueue has reserved, one Workload at a time: Ready when the
// whole gang fits the free GPUs now, Pending with a message that says what
// it needs and how much of it fits otherwise.
type TopologyFit struct {
	Client ctrlclient.Client
	Clock  clock.Clock
	// RackKey is the node label that names a node's rack.
	RackKey string
	// RecheckAfter is how often a Pending check is evaluated again.
	RecheckAfter time.Duration
	// PlacementGrace is how long a gang that passed keeps its place in
	// later evaluations while its pods are not all bound; past it, only
	// the pods bound count (a gang whose pods never came holds nothing).
	PlacementGrace time.Duration
	// StaleAfter and MissingTopology must match the scheduler profile's
	// NVLinkTopology args (topologyStaleAfterSeconds, missingTopology), so
	// that the check trusts the topologies the scheduler trusts and counts
	// nodes without one as it does. Zero values take the scheduler's
	// defaults.
	StaleAfter      time.Duration
	MissingTopology configv1alpha1.MissingTopologyPolicy
	Metrics         *Metrics

	mu sync.Mutex
	// passed are the Workloads this controller found to fit, as it saw
	// them, with when: their gangs hold free capacity until their pods are
	// bound, even before the cache shows the check Ready.
	passed map[types.NamespacedName]passedGang
}

type passedGang struct {
	wl *kueue.Workload
	at time.Time
}

// SetupWithManager registers the check's controllers: one keeps the
// AdmissionChecks it serves Active, one evaluates Workloads.
func (r *TopologyFit) SetupWithManager(mgr ctrl.Manager) error {
	r.passed = map[types.NamespacedName]passedGang{}
	if err := ctrl.NewControllerManagedBy(mgr).Named("topology-fit-check").For(&kueue.AdmissionCheck{}).
		Complete(ctrlReconcilerFunc(r.reconcileCheck)); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).Named("topology-fit").For(&kueue.Workload{}).Complete(r)
}

type ctrlReconcilerFunc func(context.Context, ctrl.Request) (ctrl.Result, error)

func (f ctrlReconcilerFunc) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return f(ctx, req)
}

func (r *TopologyFit) reconcileCheck(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var ac kueue.AdmissionCheck
	if err := r.Client.Get(ctx, req.NamespacedName, &ac); err != nil {
		return ctrl.Result{}, ctrlclient.IgnoreNotFound(err)
	}
	if ac.Spec.ControllerName != ControllerName {
		return ctrl.Result{}, nil
	}
	changed := apimeta.SetStatusCondition(&ac.Status.Conditions, metav1.Condition{
		Type:               kueue.AdmissionCheckActive,
		Status:             metav1.ConditionTrue,
		Reason:             "Active",
		Message:            "Tessera evaluates whether each gang fits the free GPU topology",
		ObservedGeneration: ac.Generation,
	})
	if !changed {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.Client.Status().Update(ctx, &ac)
}

// Reconcile evaluates one Workload's check.
func (r *TopologyFit) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	logger := klog.FromContext(ctx)
	var wl kueue.Workload
	if err := r.Client.Get(ctx, req.NamespacedName, &wl); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
		}
		return ctrl.Result{}, ctrlclient.IgnoreNotFound(err)
	}
	check, err := r.ourCheck(ctx, &wl)
	if err != nil || check == nil {
		return ctrl.Result{}, err
	}
	if !workload.HasQuotaReservation(&wl) || finish.IsFinished(&wl) {
		r.forget(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	if check.State != kueue.CheckStatePending {
		return ctrl.Result{}, nil
	}

	fitter, err := r.fitterWithout(ctx, &wl)
	if err != nil {
		return ctrl.Result{}, err
	}
	flavors, err := FlavorPlacements(ctx, r.Client, &wl)
	if err != nil {
		return ctrl.Result{}, err
	}
	res := fitter.Place(demands(&wl, flavors, nil))
	state := kueue.AdmissionCheckState{Name: check.Name, State: kueue.CheckStatePending, Message: res.Message}
	if res.Fits {
		state.State = kueue.CheckStateReady
		r.remember(&wl)
	}
	r.Metrics.evaluated(res.Fits)
	if state.State != check.State || state.Message != check.Message {
		err := patching.PatchStatus(ctx, r.Client, &wl, fieldOwner, func(wl *kueue.Workload) (bool, error) {
			return patching.SetAdmissionCheckState(&wl.Status.AdmissionChecks, state, r.Clock), nil
		})
		if err != nil {
			r.forget(req.NamespacedName)
			return ctrl.Result{}, fmt.Errorf("setting check %s: %w", check.Name, err)
		}
		logger.V(2).Info("Topology fit evaluated", "workload", klog.KObj(&wl), "state", state.State, "message", state.Message)
	}
	if res.Fits {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{RequeueAfter: r.RecheckAfter}, nil
}

// ourCheck returns the Workload's state of a check this controller serves.
func (r *TopologyFit) ourCheck(ctx context.Context, wl *kueue.Workload) (*kueue.AdmissionCheckState, error) {
	for i := range wl.Status.AdmissionChecks {
		name := wl.Status.AdmissionChecks[i].Name
		var ac kueue.AdmissionCheck
		if err := r.Client.Get(ctx, types.NamespacedName{Name: string(name)}, &ac); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, err
		}
		if ac.Spec.ControllerName == ControllerName {
			return admissioncheck.FindAdmissionCheck(wl.Status.AdmissionChecks, name), nil
		}
	}
	return nil, nil
}

// fitterWithout returns a Fitter over the cluster's free capacity less what
// the gangs admitted earlier and not yet placed will take (oldest first),
// leaving out self.
func (r *TopologyFit) fitterWithout(ctx context.Context, self *kueue.Workload) (*Fitter, error) {
	nodes, err := r.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	fitter := NewFitter(nodes, r.RackKey)
	earlier, err := r.admittedGangs(ctx, self)
	if err != nil {
		return nil, err
	}
	for _, wl := range earlier {
		bound, err := r.boundPods(ctx, wl)
		if err != nil {
			return nil, err
		}
		flavors, err := FlavorPlacements(ctx, r.Client, wl)
		if err != nil {
			return nil, err
		}
		if d := demands(wl, flavors, bound); len(d) > 0 {
			fitter.Place(d)
		}
	}
	return fitter, nil
}

// admittedGangs lists the Workloads whose topology-fit check passed within
// the placement grace and that still hold quota: those in the cache, and
// those this controller passed that the cache does not show yet.
func (r *TopologyFit) admittedGangs(ctx context.Context, self *kueue.Workload) ([]*kueue.Workload, error) {
	var list kueue.WorkloadList
	if err := r.Client.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("listing workloads: %w", err)
	}
	since := r.Clock.Now().Add(-r.PlacementGrace)
	byKey := map[types.NamespacedName]*kueue.Workload{}
	for i := range list.Items {
		wl := &list.Items[i]
		if !workload.HasQuotaReservation(wl) || finish.IsFinished(wl) {
			continue
		}
		check, err := r.ourCheck(ctx, wl)
		if err != nil {
			return nil, err
		}
		if check != nil && check.State == kueue.CheckStateReady && check.LastTransitionTime.After(since) {
			byKey[types.NamespacedName{Namespace: wl.Namespace, Name: wl.Name}] = wl
		}
	}
	r.mu.Lock()
	for key, p := range r.passed {
		if p.at.Before(since) {
			delete(r.passed, key)
			continue
		}
		if _, seen := byKey[key]; !seen {
			byKey[key] = p.wl
		}
	}
	r.mu.Unlock()
	delete(byKey, types.NamespacedName{Namespace: self.Namespace, Name: self.Name})
	out := make([]*kueue.Workload, 0, len(byKey))
	for _, wl := range byKey {
		out = append(out, wl)
	}
	slices.SortFunc(out, func(a, b *kueue.Workload) int {
		return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time), cmp.Compare(a.Name, b.Name))
	})
	return out, nil
}

func (r *TopologyFit) remember(wl *kueue.Workload) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.passed[types.NamespacedName{Namespace: wl.Namespace, Name: wl.Name}] = passedGang{wl: wl.DeepCopy(), at: r.Clock.Now()}
}

func (r *TopologyFit) forget(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.passed, key)
}

// Metrics are the check's Prometheus metrics.
type Metrics struct {
	evaluations *prometheus.CounterVec
}

// NewMetrics registers the check's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{evaluations: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tessera_topology_fit_evaluations_total",
		Help: "Evaluations of the tessera.dev/topology-fit admission check, by result (ready: the gang fits now; pending: it does not).",
	}, []string{"result"})}
	reg.MustRegister(m.evaluations)
	// Every result from the start, so that a rate over them is 0, not absent.
	for _, result := range []string{"ready", "pending"} {
		m.evaluations.WithLabelValues(result)
	}
	return m
}

func (m *Metrics) evaluated(fits bool) {
	if m == nil {
		return
	}
	result := "pending"
	if fits {
		result = "ready"
	}
	m.evaluations.WithLabelValues(result).Inc()
}
