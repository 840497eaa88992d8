#pragma once
// MilterAction: what the loop side answers a milter callback, in libmilter's terms but without
// libmilter: the status, the reply for smfi_setreply, and the header changes for end-of-message
// (already resolved to smfi_addheader / smfi_chgheader calls). Pure value type.

#include <optional>
#include <string>
#include <vector>

#include "portcullis/reply.h"

namespace portcullis {

struct MilterHeaderOp {
  enum class Kind { kAdd, kChange };  // kChange with an empty value deletes the field
  Kind kind = Kind::kAdd;
  std::string name;
  std::string value;
  int index = 0;  // kChange: 1-based among the fields of that name (smfi_chgheader)
  bool operator==(const MilterHeaderOp&) const = default;
};

struct MilterAction {
  enum class Status { kContinue, kAccept, kReject, kTempfail, kDiscard };
  Status status = Status::kContinue;
  std::optional<Reply> reply;  // kReject / kTempfail: smfi_setreply
  std::vector<MilterHeaderOp> headerOps;

  static MilterAction proceed() { return {}; }
  static MilterAction tempfail() { return {Status::kTempfail, std::nullopt, {}}; }
};

}  // namespace portcullis
