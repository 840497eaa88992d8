// SessionRecordView. See session_record.h.

#include "proxy/api/session_record.h"

namespace portcullis {

SessionRecordView::SessionRecordView(const SessionRecord& record)
    : r_(&record),
      mailParams_(record.envelope.mailParams),
      recipients_(record.envelope.recipients),
      rcptParams_(record.envelope.currentRecipientParams),
      headers_(record.message.headers) {}

}  // namespace portcullis
