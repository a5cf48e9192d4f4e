// Package align finds permutations of hidden units that align one network's parameters with
// another's: the permutation-symmetry matching step of learning-trajectory transfer (Chijiwa,
// "Transferring Learning Trajectories of Neural Networks", ICLR 2024), the same weight-matching
// problem as Git Re-Basin. It is pure permutation math on dense float32 tensors and imports only
// the standard library.
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
// # Assignment
//
// Assign and Assigner solve the dense linear assignment problem exactly (maximising the total
// score) with the Jonker-Volgenant shortest augmenting path algorithm; an Assigner reuses its
// workspace and warm-starts from its previous solution, which the Matcher exploits between
// sweeps.
//
// # Conventions
//
// Tensors are row-major. Perm.Apply makes output index i of a permuted axis take input index
// p[g][i]; a Member with Block b moves b contiguous positions per group element (a Flatten after
// a convolution). Errors start with "align: " and name the offending group or parameter; bad
// input is reported as an error (or a documented nil result), never a panic.
package align
