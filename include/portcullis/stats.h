#pragma once
// Stats: counters and histograms, offered to filters through FilterContext (and used by the
// core), for a metrics endpoint to render. Register a series once, when a filter is configured
// or first created, never per event: registration may lock and allocate. The handle it returns
// is the hot path: add()/observe() is a relaxed atomic add in the calling thread's own cell (each
// worker counts apart; a read merges the threads' cells), with no lock and no allocation.
// The registry never frees a series, so a handle stays valid for the life of the registry (the
// daemon's lives as long as the process). The same name and labels give the same series.
// A default-constructed handle is valid and counts nothing (tests, stats switched off).

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string_view>

namespace portcullis {

// One label of a series, e.g. {"zone", "zen.spamhaus.org"}. Names are Prometheus-style
// ([a-z_][a-z0-9_]*); values are any text (the renderer escapes them).
struct StatLabel {
  std::string_view name;
  std::string_view value;
};

// The registry's storage for one counter and one histogram; opaque to filters.
class CounterCell;
class HistogramCells;

class Counter {
 public:
  Counter() = default;
  explicit Counter(CounterCell* cell) : cell_(cell) {}

  void add(std::uint64_t n = 1) const;
  // The total over every thread.
  std::uint64_t value() const;

 private:
  CounterCell* cell_ = nullptr;
};

class Histogram {
 public:
  Histogram() = default;
  explicit Histogram(HistogramCells* cells) : cells_(cells) {}

  // Counts `value` in the first bucket whose upper bound is >= value (or +Inf), and in the sum.
  void observe(std::uint64_t value) const;

 private:
  HistogramCells* cells_ = nullptr;
};

class Stats {
 public:
  virtual ~Stats() = default;
  // `name` ends in _total by convention (Prometheus). Get-or-create.
  virtual Counter counter(std::string_view name, std::initializer_list<StatLabel> labels) = 0;
  // `bounds`: ascending bucket upper bounds (an +Inf bucket is implied). The first
  // registration of a series fixes its bounds; later ones get the same series.
  virtual Histogram histogram(std::string_view name, std::initializer_list<StatLabel> labels,
                              std::span<const std::uint64_t> bounds) = 0;
};

}  // namespace portcullis
