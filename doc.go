// Package holdfast is a reservation engine for scarce things: event tickets,
// numbered seats, delivery riders, stock.
//
// The root package holds the domain (Pool, Group, Unit, Hold, Line, Event), the
// Store contract every backend implements, the strategy names and the errors,
// each with a stable code. It imports only the standard library; storage lives
// in the sqlite and postgres packages, and the conformance suite that proves a
// backend keeps every guarantee lives in holdfasttest.
//
// The guarantees, in short: a pool never gives out more than its capacity, a
// unit never has two active claims, a hold past its expiry can never be
// confirmed and its capacity is free for the very next claim, and every state
// change appends an outbox event in the same transaction.
package holdfast
