package convert

import (
	"math"
	"testing"
)

func TestCosineScheduleTakesBigStepsFirst(t *testing.T) {
	c, err := Cosine.Coefficients(10)
	if err != nil {
		t.Fatal(err)
	}
	// S(1) = 2 and S(10) = sum_{t<10} (1 + cos(pi t/10)) = 10 + 1 (the cosines pair up to 0, but
	// for cos 0 = 1), so c_1 = 2/11.
	if math.Abs(c[1]-2.0/11) > 1e-12 || c[0] != 0 || c[10] != 1 {
		t.Errorf("coefficients %v", c)
	}
	for k := 1; k < 10; k++ {
		if c[k+1]-c[k] > c[k]-c[k-1]+1e-12 {
			t.Errorf("step %d (%g) is bigger than step %d (%g)", k+1, c[k+1]-c[k], k, c[k]-c[k-1])
		}
	}
	u, err := Uniform.Coefficients(4)
	if err != nil || u[1] != 0.25 || u[3] != 0.75 {
		t.Errorf("uniform %v %v", u, err)
	}
	if _, err := Cosine.Coefficients(0); err == nil {
		t.Error("0 steps accepted")
	}
	if _, err := ParseSchedule("linear"); err == nil {
		t.Error("unknown schedule accepted")
	}
}
