package main

import "testing"

func TestResultLine(t *testing.T) {
	want := result{trace: "default", policy: "Tessera", seed: 42, pods: 10767, placed: 8352,
		alloc100: 95.63, allocEnd: 95.72, partialEnd: 4.26, idleEnd: 0.02, seconds: 42.2}
	got, err := parseLine(want.line())
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("parseLine(line()) = %+v, want %+v", got, want)
	}
}
