// Package launcher runs TrainingJobs and ServingGroups under Kueue: each
// job, and each serving replica, is a Kueue Workload with one PodSet per
// role; once Kueue admits it (quota, and Tessera's topology-fit check), the
// launcher creates its gang (a PodGroup and its pods for
// tessera-scheduler), tears the gang down whole when a member fails or
// Kueue evicts it, and keeps status conditions and events that say why a
// job waits.
package launcher

// Labels on the objects the launcher creates.
const (
	// LabelOwnerKind and LabelOwnerName name the TrainingJob or
	// ServingGroup a Workload belongs to.
	LabelOwnerKind = "tessera.dev/owner-kind"
	LabelOwnerName = "tessera.dev/owner-name"
	// LabelTrainingJob names a pod's TrainingJob.
	LabelTrainingJob = "tessera.dev/trainingjob"
	// LabelServingGroup names a pod's ServingGroup.
	LabelServingGroup = "tessera.dev/servinggroup"
	// LabelReplica is a serving pod's replica index.
	LabelReplica = "tessera.dev/replica"
	// LabelRole is a pod's role: worker or coordinator; leader or worker.
	LabelRole = "tessera.dev/role"
	// LabelServing, on a serving replica's leader, is "true" while the
	// group's API Service may send it requests (the Service selects on
	// it); the launcher sets it to "false" before it deletes the pod, so a
	// replica being replaced or removed stops taking traffic first.
	LabelServing = "tessera.dev/serving"
	// LabelAttempt counts a TrainingJob's whole-gang restarts: the pods of
	// one attempt carry its number.
	LabelAttempt = "tessera.dev/attempt"
)

// SchedulerName is the profile gangs are scheduled by.
const (
	SchedulerName        = "tessera-scheduler"
	ServingSchedulerName = "tessera-serving"
)

// finalizer lets the launcher delete a job's pods, PodGroups, Services and
// Workloads itself (there may be no garbage collector to follow owner
// references, and the pods must go before the quota is returned).
const finalizer = "tessera.dev/launcher"
