package params

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func set() Set {
	return Set{
		"w": {Shape: []int{2, 3}, Data: []float32{1, 2, 3, 4, 5, 6}},
		"b": {Shape: []int{2}, Data: []float32{7, 8}},
	}
}

func TestCloneIsDeep(t *testing.T) {
	s := set()
	c := s.Clone()
	c["w"].Data[0], c["w"].Shape[0] = -1, 9
	if s["w"].Data[0] != 1 || s["w"].Shape[0] != 2 {
		t.Fatalf("changing the clone changed the original: %+v", s["w"])
	}
	if !slices.Equal(c["b"].Data, s["b"].Data) || len(c) != len(s) {
		t.Fatalf("clone %+v differs from %+v", c, s)
	}
}

func TestZerosLikeAndSubset(t *testing.T) {
	s := set()
	z := s.ZerosLike()
	for name, tz := range z {
		if !slices.Equal(tz.Shape, s[name].Shape) || len(tz.Data) != len(s[name].Data) || slices.ContainsFunc(tz.Data, func(v float32) bool { return v != 0 }) {
			t.Fatalf("%s: zeros %+v for %+v", name, tz, s[name])
		}
	}
	sub := s.Subset([]string{"b"})
	if len(sub) != 1 || sub["b"] != s["b"] {
		t.Fatalf("subset %+v does not share b of %+v", sub, s)
	}
	if got, want := s.Bytes(), int64(4*8); got != want {
		t.Fatalf("Bytes = %d, want %d", got, want)
	}
}

func TestCheckFiniteNamesTheFirstInOrder(t *testing.T) {
	s := set()
	if err := s.CheckFinite([]string{"w", "b"}); err != nil {
		t.Fatal(err)
	}
	s["w"].Data[4] = float32(math.Inf(-1))
	s["b"].Data[1] = float32(math.NaN())
	err := s.CheckFinite([]string{"b", "w"})
	if err == nil || !strings.Contains(err.Error(), `parameter "b"`) || !strings.Contains(err.Error(), "index 1") {
		t.Fatalf("got %v, want b's NaN at index 1", err)
	}
	if err := s.CheckFinite([]string{"w"}); err == nil || !strings.Contains(err.Error(), "index 4") {
		t.Fatalf("got %v, want w's -Inf at index 4", err)
	}
}

func TestVolumeAndCheck(t *testing.T) {
	for _, c := range []struct {
		dims  []int
		limit int
		n     int
		ok    bool
	}{
		{nil, 10, 1, true},
		{[]int{2, 3, 4}, 24, 24, true},
		{[]int{2, 3, 4}, 23, 0, false},
		{[]int{0, 7}, 1, 0, true},
		{[]int{2, -1}, 100, 0, false},
		{[]int{1 << 40, 1 << 40}, math.MaxInt, 0, false},
	} {
		n, ok := Volume(c.dims, c.limit)
		if n != c.n || ok != c.ok {
			t.Errorf("Volume(%v, %d) = %d, %v; want %d, %v", c.dims, c.limit, n, ok, c.n, c.ok)
		}
	}
	if Size([]int{3, 5}) != 15 || Size([]int{-3}) != 0 {
		t.Errorf("Size: %d, %d", Size([]int{3, 5}), Size([]int{-3}))
	}
	if err := (&Tensor{Shape: []int{2, 2}, Data: make([]float32, 4)}).Check(); err != nil {
		t.Error(err)
	}
	for _, bad := range []*Tensor{{Shape: []int{2, 2}, Data: make([]float32, 3)}, {Shape: []int{-1}}, {Shape: []int{1 << 40, 1 << 40}}} {
		if err := bad.Check(); err == nil {
			t.Errorf("Check(%v with %d values) passed", bad.Shape, len(bad.Data))
		}
	}
}
