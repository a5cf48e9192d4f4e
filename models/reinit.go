package models

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/params"
)

// stream is the second PCG seed word, fixed so that a seed alone determines the values
// ("ltransfr" in ASCII).
const stream = 0x6c7472616e736672

// Reinit returns new values for every float32 initializer of m, drawn from seed by role as the
// package documentation describes: weights and biases uniform within ±1/sqrt(fan_in),
// BatchNormalization scales 1 and biases 0, running means 0 and variances 1, and copies of the
// other initializers. The result holds every initializer with its shape, ready for m.Save or
// graph.Session.SetParams; m is not changed. It fails, naming the parameter, when a weight or
// bias has no fan-in graph.Model.FanIn can derive.
func Reinit(m *graph.Model, seed uint64) (params.Set, error) {
	rng := rand.New(rand.NewPCG(seed, stream))
	out := make(params.Set, len(m.Infos))
	for _, info := range m.Infos {
		src, ok := m.Params[info.Name]
		if !ok {
			return nil, fmt.Errorf("models: parameter %q is described but has no values", info.Name)
		}
		t := &params.Tensor{Shape: slices.Clone(info.Shape), Data: make([]float32, len(src.Data))}
		switch info.Role {
		case graph.RoleWeight, graph.RoleBias:
			fanIn, err := m.FanIn(info.Name)
			if err != nil {
				return nil, fmt.Errorf("models: cannot draw the %s %q: %w", info.Role, info.Name, err)
			}
			uniform(rng, t.Data, 1/math.Sqrt(float64(fanIn)))
		case graph.RoleNormScale, graph.RoleRunningVar:
			fill(t.Data, 1)
		case graph.RoleNormBias, graph.RoleRunningMean:
			// zeros
		default:
			copy(t.Data, src.Data)
		}
		out[info.Name] = t
	}
	return out, nil
}

// uniform fills data with independent draws from U(-bound, bound). Rounding to float32 is
// monotone, so no value exceeds float32(bound) in magnitude.
func uniform(rng *rand.Rand, data []float32, bound float64) {
	for i := range data {
		data[i] = float32(bound * (2*rng.Float64() - 1))
	}
}

func fill(data []float32, v float32) {
	for i := range data {
		data[i] = v
	}
}
