// Package align finds permutations of hidden units that align one network's parameters with
// another's: the permutation-symmetry matching step of learning-trajectory transfer (Chijiwa,
// "Transferring Learning Trajectories of Neural Networks", ICLR 2024), the same weight-matching
// problem as Git Re-Basin. It is pure permutation math on float32 tensors (dense, or low-rank
// products for gradients) and imports only the standard library and gonum's BLAS (OpenBLAS in
// the openblas build).
//
// # Objective
//
// A Spec lists permutation groups; each group permutes one axis of several parameters (a
// hidden layer's units appear as the rows of its incoming weight and bias and the columns of
// the outgoing weight). Given weighted pairs (w_p, target_p, source_p), a Matcher looks for the
// permutation pi (one permutation per group, see Perm and Perm.Apply) minimising
//
//	sum_p w_p * ||target_p - pi(source_p)||^2
//
// or equivalently, since permutations preserve norms, maximising sum_p w_p <target_p, pi(source_p)>.
// Matcher.Solve does coordinate descent over the groups: with the other groups fixed the
// objective is linear in the permutation of one group, so each step solves one exact dense
// linear assignment problem (Assign) on that group's Size x Size score matrix; the objective
// never increases. The result is a local optimum of the joint problem (which is NP-hard in
// general), exact in each coordinate.
//
// # Score products
//
// The score matrices are sums of products of slabs, computed in float32 by gonum's BLAS and
// accumulated in float64. A gradient of a dense layer over a batch of B examples is a sum of B
// outer products; given as a LowRank (Matcher.AddOperands) its score is formed from the factors,
// U_t^T (V_t V_s^T) U_s, at a cost of about n*B*(n+B) instead of n*n*m for an n x m weight.
// Every group's score matrix is kept (up to 64 MiB together, or the largest group's): pairs
// added to a Matcher that is solved again (as FGMT does) are summed into it alone, and when a
// neighbouring group's permutation moves some of its units, only the products of the slabs at
// the moved positions (target times the source's change) are added.
//
// # Assignment
//
// Assign and Assigner solve the dense linear assignment problem exactly (maximising the total
// score) with the Jonker-Volgenant shortest augmenting path algorithm, handing over to an
// ε-scaling auction when the shortest paths grow long (as they do on the low-rank score matrices
// of gradient matching), and finishing exactly; an Assigner reuses its workspace and
// warm-starts from its previous solution, which the Matcher exploits between sweeps and between
// solves.
//
// # Conventions
//
// Tensors are row-major. Perm.Apply makes output index i of a permuted axis take input index
// p[g][i]; a Member with Block b moves b contiguous positions per group element (a Flatten after
// a convolution), and its Offset and Repeat place the group on a slice of an axis (one input of
// a Concat) or on every copy of a repeated structure (the convolution groups of a grouped
// convolution's input), so that several groups can share one axis. Errors start with "align: " and name the offending group or parameter; bad
// input is reported as an error (or a documented nil result), never a panic.
package align
