package fragmentation

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Mix learns a workload mix online: the shapes of the tasks seen, with
// counts that decay so that the mix follows the workload as it changes.
// After halfLife more tasks, a task counts half as much.
type Mix struct {
	decay  float64
	shapes map[string]*Shape
}

// NewMix returns an empty mix whose counts halve every halfLife tasks.
func NewMix(halfLife int) *Mix {
	return &Mix{decay: math.Pow(0.5, 1/float64(max(halfLife, 1))), shapes: map[string]*Shape{}}
}

// Observe counts one task.
func (m *Mix) Observe(t Task) {
	for key, s := range m.shapes {
		s.Weight *= m.decay
		// Shapes not seen for a long time drop out.
		if s.Weight < 1e-3 {
			delete(m.shapes, key)
		}
	}
	key := shapeKey(t)
	s, ok := m.shapes[key]
	if !ok {
		s = &Shape{Task: t}
		s.Models = slices.Clone(t.Models)
		m.shapes[key] = s
	}
	s.Weight++
}

// Shapes returns the mix, heaviest first.
func (m *Mix) Shapes() []Shape {
	out := make([]Shape, 0, len(m.shapes))
	for _, s := range m.shapes {
		out = append(out, *s)
	}
	SortHeaviestFirst(out)
	return out
}

// SortHeaviestFirst sorts shapes by weight, heaviest first; equal weights
// in a fixed order.
func SortHeaviestFirst(shapes []Shape) {
	slices.SortFunc(shapes, func(a, b Shape) int {
		return cmp.Or(cmp.Compare(b.Weight, a.Weight), cmp.Compare(a.CPUMilli, b.CPUMilli), cmp.Compare(a.GPUs, b.GPUs),
			cmp.Compare(a.GPUMilli, b.GPUMilli), slices.Compare(a.Models, b.Models))
	})
}

func shapeKey(t Task) string {
	models := slices.Clone(t.Models)
	slices.Sort(models)
	return fmt.Sprintf("%d/%d/%d/%s", t.CPUMilli, t.GPUs, t.GPUMilli, strings.Join(models, "|"))
}
