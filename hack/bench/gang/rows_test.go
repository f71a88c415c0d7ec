package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFillSizesCoverEveryNodeOnce(t *testing.T) {
	for _, tc := range []struct {
		nodes, size int
		want        []int
	}{
		{nodes: 500, size: 20, want: []int{20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20}},
		{nodes: 25, size: 10, want: []int{10, 10, 5}},
		{nodes: 5, size: 10, want: []int{5}},
	} {
		if diff := cmp.Diff(tc.want, fillSizes(tc.nodes, tc.size)); diff != "" {
			t.Errorf("fillSizes(%d, %d) (-want +got):\n%s", tc.nodes, tc.size, diff)
		}
	}
}

func TestPriorityGangsAndTheirMembers(t *testing.T) {
	gangs, pods := priorityGangs("low", priorityLow, []int{2, 1})
	wantGangs := []gangDef{{name: "low-000", minMember: 2, priorityClass: priorityLow}, {name: "low-001", minMember: 1, priorityClass: priorityLow}}
	if diff := cmp.Diff(wantGangs, gangs, cmp.AllowUnexported(gangDef{})); diff != "" {
		t.Errorf("gangs (-want +got):\n%s", diff)
	}
	wantMembers := [][]string{{"low-000-0000", "low-000-0001"}, {"low-001-0000"}}
	if diff := cmp.Diff(wantMembers, members(pods)); diff != "" {
		t.Errorf("members (-want +got):\n%s", diff)
	}
	for _, p := range pods {
		if p.gpus != 8 || p.priorityClass != priorityLow {
			t.Errorf("pod %s: %d GPUs of %q, want 8 of %q", p.name, p.gpus, p.priorityClass, priorityLow)
		}
	}
}

func TestMembersKeepsGangsInOrderOfFirstMemberAndSkipsLonePods(t *testing.T) {
	pods := []podDef{{name: "a0", group: "a"}, {name: "lone"}, {name: "b0", group: "b"}, {name: "a1", group: "a"}}
	if diff := cmp.Diff([][]string{{"a0", "a1"}, {"b0"}}, members(pods)); diff != "" {
		t.Errorf("members (-want +got):\n%s", diff)
	}
}

func TestRowNames(t *testing.T) {
	o := options{nodes: 500, togetherGangs: 100, togetherSize: 8, togetherGPUs: 4, preemptLowSize: 20, preemptHighGangs: 4, preemptHighSize: 32}
	if diff := cmp.Diff("100 gangs of 8 together, 4-GPU pods", togetherName(o)); diff != "" {
		t.Errorf("togetherName (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("4 high-priority gangs of 32 preempting 25 low of 20", preemptionName(o)); diff != "" {
		t.Errorf("preemptionName (-want +got):\n%s", diff)
	}
	o.nodes = 110
	if diff := cmp.Diff("4 high-priority gangs of 32 preempting 5 low of 20 and 1 of 10", preemptionName(o)); diff != "" {
		t.Errorf("preemptionName with a remainder (-want +got):\n%s", diff)
	}
}

func TestValidateRows(t *testing.T) {
	ok := options{nodes: 500, togetherGangs: 100, togetherSize: 8, togetherGPUs: 4, preemptLowSize: 20, preemptHighGangs: 4, preemptHighSize: 32}
	if err := ok.validateRows(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	for name, change := range map[string]func(*options){
		"together gangs over the GPUs": func(o *options) { o.togetherGangs = 126 },
		"together pods over a node":    func(o *options) { o.togetherGPUs = 16 },
		"high gangs over the nodes":    func(o *options) { o.preemptHighGangs = 16 },
		"no low gang size":             func(o *options) { o.preemptLowSize = 0 },
	} {
		o := ok
		change(&o)
		if err := o.validateRows(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	off := options{nodes: 1, togetherGangs: 0, preemptHighGangs: 0, togetherGPUs: 99, preemptHighSize: 99}
	if err := off.validateRows(); err != nil {
		t.Errorf("rows off: %v", err)
	}
}
