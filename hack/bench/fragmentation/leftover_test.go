package main

import (
	"testing"

	"tessera.dev/tessera/internal/openb"
)

func TestLeftover(t *testing.T) {
	l := newLeftover([]openb.Node{{Name: "n", CPUMilli: 8000, GPUs: 4, Model: "G2"}})
	share := openb.Pod{Name: "share", CPUMilli: 1000, GPUs: 1, GPUMilli: 810}
	whole := openb.Pod{Name: "whole", CPUMilli: 1000, GPUs: 2, GPUMilli: 1000}
	if err := l.place(share, "n", "1"); err != nil {
		t.Fatal(err)
	}
	if err := l.place(whole, "n", "0,3"); err != nil {
		t.Fatal(err)
	}
	if partial, idle := l.split(); partial != 190 || idle != 1000 {
		t.Errorf("split = %d partly used, %d idle; want 190 and 1000", partial, idle)
	}
	if err := l.place(share, "n", "1"); err == nil {
		t.Error("a second 810 on a GPU with 190 free was accepted")
	}
	if err := l.place(whole, "n", "2"); err == nil {
		t.Error("a pod of 2 GPUs bound to one was accepted")
	}
	if err := l.place(share, "elsewhere", "0"); err == nil {
		t.Error("a pod on an unknown node was accepted")
	}
}
