package launcher_test

import (
	"strings"
	"testing"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/launcher"
	"tessera.dev/tessera/test/integration/framework"
)

// A TrainingJob x-0 whose PodGroup name is taken by ServingGroup x's
// replica 0 does not adopt it: the job waits with reason NameConflict
// naming the PodGroup and its controller, and the serving replica's
// PodGroup and pods are left as they are.
func TestNameConflictAcrossKindsIsRefused(t *testing.T) {
	ns := env.Namespace(t)
	env.StartLauncher(t, recheck)
	gpuNodes(t, "dgx-h100", "rack-names", "names-a", "names-b")
	q := env.CreateQueue(t, ns, "team", framework.QueueSpec{GPUs: 16})
	sg := servingGroup(ns, "x", q, 1)
	submit(t, sg)
	waitReplicas(t, sg, 1)
	servingPods := jobPods(t, ns, launcher.LabelServingGroup, sg.Name)

	job := trainingJob(ns, "x-0", q, 1, 8)
	submit(t, job)
	waitJob(t, job, "to wait on the PodGroup x-0 of ServingGroup x", func(j *tesserav1alpha1.TrainingJob) bool {
		c := apimeta.FindStatusCondition(j.Status.Conditions, string(j.Status.Phase))
		return c != nil && c.Reason == "NameConflict" &&
			strings.Contains(c.Message, "PodGroup "+ns+"/x-0 exists and is not this object's (ServingGroup x)")
	})

	var pg schedv1alpha1.PodGroup
	if err := env.CR.Get(t.Context(), ctrlclient.ObjectKey{Namespace: ns, Name: "x-0"}, &pg); err != nil {
		t.Fatal(err)
	}
	if ref := metav1.GetControllerOf(&pg); ref == nil || ref.Kind != "ServingGroup" || pg.Spec.MinMember != 1 {
		t.Errorf("PodGroup x-0: controller %v, minMember %d; want the ServingGroup's, 1", ref, pg.Spec.MinMember)
	}
	if pods := jobPods(t, ns, launcher.LabelTrainingJob, job.Name); len(pods) != 0 {
		t.Errorf("the blocked job created %d pods", len(pods))
	}
	waitReplicas(t, sg, 1)
	if now := jobPods(t, ns, launcher.LabelServingGroup, sg.Name); len(now) != 1 || now[0].UID != servingPods[0].UID {
		t.Errorf("the serving replica's pod was replaced: %v", now)
	}
}
