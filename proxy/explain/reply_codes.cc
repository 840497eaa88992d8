// The reply code tables. See reply_codes.h. Sources: RFC 5321 4.2 (basic codes), RFC 3463
// (enhanced status codes), the IANA "SMTP Enhanced Status Codes" registry (RFC 3886, 4468, 4954,
// 5248, 6531, 6710, 7293, 7372, 7505, 8098, 8617, 8689), RFC 3207 (STARTTLS), RFC 7504 (521/556).

#include "proxy/explain/reply_codes.h"

#include <algorithm>
#include <array>
#include <charconv>

namespace portcullis {
namespace {

// clang-format off
constexpr std::array kBasicCodes = {
  // RFC 5321 4.2.3, in its order.
  BasicReplyCode{211, "System status, or system help reply",
    "The server answers a status or HELP request. Nothing went wrong.", "",
    "Nothing to do."},
  BasicReplyCode{214, "Help message",
    "The server answers HELP with human-readable text. Nothing went wrong.", "",
    "Nothing to do."},
  BasicReplyCode{220, "<domain> Service ready",
    "The greeting: the server is ready for the client's EHLO (also the reply to STARTTLS: "
    "ready to start TLS).", "",
    "Nothing to do."},
  BasicReplyCode{221, "<domain> Service closing transmission channel",
    "The reply to QUIT: the server closes the connection normally.", "",
    "Nothing to do; a session that ends with 221 ended cleanly."},
  BasicReplyCode{250, "Requested mail action okay, completed",
    "The command was accepted. After the end of DATA it means the server took responsibility "
    "for the message (queued it; the text often carries the queue id).", "",
    "Nothing to do. To follow the message further, look up its queue id in the MTA's log."},
  BasicReplyCode{251, "User not local; will forward to <forward-path>",
    "The recipient is accepted and will be forwarded elsewhere.", "",
    "Nothing to do."},
  BasicReplyCode{252, "Cannot VRFY user, but will accept message and attempt delivery",
    "The server will not confirm whether the address exists (VRFY is usually disabled against "
    "address harvesting) but would take mail for it.", "",
    "Nothing to do."},
  BasicReplyCode{354, "Start mail input; end with <CRLF>.<CRLF>",
    "The reply to DATA: the server waits for the message, ended by a line with a single dot.",
    "", "Nothing to do. A session that stops after 354 lost the connection or timed out while "
    "sending the message; check the network path and the size of the message."},
  BasicReplyCode{421, "<domain> Service not available, closing transmission channel",
    "The server is shutting the connection down: it is overloaded, going down, the client "
    "was too slow (a timeout), or a policy closed the session for now.",
    "The sending MTA keeps the message and retries later, often from the start of the session.",
    "Look at the reason in the log: a timeout (stage=idle), a connection limit, an MTA that is "
    "down (event=upstream-failure) or a filter that defers. Fix the cause; the mail arrives on "
    "the sender's next retry."},
  BasicReplyCode{450, "Requested mail action not taken: mailbox unavailable",
    "The mailbox is temporarily unavailable (busy, locked, or a policy such as greylisting "
    "asked the sender to come back later).", "",
    "Usually nothing: a well-behaved sender retries. If it is greylisting, the first message "
    "from a new sender is delayed by design. If a filter defers, check the reason in the log."},
  BasicReplyCode{451, "Requested action aborted: local error in processing",
    "Something failed on the receiving side (a lookup timed out, a filter or the MTA had an "
    "error). It is not the sender's fault.", "",
    "Look at the reason: a DNS or DNSBL lookup that timed out, a filter error (event=filter-"
    "error), an MTA that answered 451. Fix that; the sender retries by itself."},
  BasicReplyCode{452, "Requested action not taken: insufficient system storage",
    "The receiving side is out of space, or (for RCPT) the message has too many recipients "
    "for one transaction.", "",
    "Free disk space on the MTA's queue, or raise the recipient limit. For too many "
    "recipients, the sender sends the rest in another transaction by itself."},
  BasicReplyCode{455, "Server unable to accommodate parameters",
    "The server cannot handle the MAIL FROM or RCPT TO parameters right now.", "",
    "Check which ESMTP parameter the client sent (SIZE, BODY, SMTPUTF8...) and whether the "
    "server advertises it."},
  BasicReplyCode{500, "Syntax error, command unrecognized",
    "The server did not understand the command (unknown, misspelt, or the line was too long).",
    "The client should not repeat the command as it was; a mail client shows an error, an MTA "
    "bounces or gives up the session.",
    "Usually a broken or non-SMTP client (a scanner, an HTTP request on port 25). If a real "
    "mailer gets it, check for a command line over 512 octets or a middlebox that mangles "
    "the session."},
  BasicReplyCode{501, "Syntax error in parameters or arguments",
    "The command was understood but its arguments were not: a malformed address in MAIL "
    "FROM or RCPT TO, a bad HELO name, bad AUTH data.", "",
    "Check the argument in the log (from=, to=, helo=). A sender with a broken address must "
    "fix it on its side."},
  BasicReplyCode{502, "Command not implemented",
    "The server knows the command but does not offer it (VRFY, EXPN, TURN, or an extension "
    "that is switched off).", "",
    "Nothing, unless a legitimate client needs that command; then enable it on the server."},
  BasicReplyCode{503, "Bad sequence of commands",
    "The command came in the wrong order: RCPT before MAIL, DATA without an accepted "
    "recipient, MAIL before EHLO, AUTH or STARTTLS twice, or a command after the server "
    "refused the session.", "",
    "Often the result of an earlier refusal: look at the command before it. A client that "
    "ignores a refused RCPT and sends DATA anyway gets 503 (no valid recipients)."},
  BasicReplyCode{504, "Command parameter not implemented",
    "The command's parameter is not supported (an unknown AUTH mechanism, an unsupported "
    "ESMTP option).", "",
    "Check the parameter; offer the mechanism or tell the client's admin to use another."},
  BasicReplyCode{550, "Requested action not taken: mailbox unavailable",
    "Refused for good: the mailbox does not exist, relaying is denied, or a policy (block "
    "list, spam rule) refused the mail.", "",
    "Read who refused and why. For an unknown user, check the address; for relay denied, the "
    "client is not allowed to send to that domain through you; for a block list, the sender "
    "must get delisted, or you add an exception if you trust it."},
  BasicReplyCode{551, "User not local; please try <forward-path>",
    "The recipient is not here; the server names where to send instead but will not forward.",
    "", "Nothing on the receiving side; the sender should use the address given."},
  BasicReplyCode{552, "Requested mail action aborted: exceeded storage allocation",
    "The message is too big (SIZE limit) or the mailbox is over quota.",
    "Permanent, so the message bounces; RFC 5321 4.5.3.1.10 asks clients to treat a 552 "
    "for too many recipients as temporary.",
    "Compare the size in the log with the limit (message_size_limit, our limits). Raise the "
    "limit or ask the sender to send smaller messages; free the mailbox if it is a quota."},
  BasicReplyCode{553, "Requested action not taken: mailbox name not allowed",
    "The address is not acceptable: bad syntax, or a sender address this server refuses.",
    "", "Check the address in the log. The sender must correct it."},
  BasicReplyCode{554, "Transaction failed (or, as the greeting: No SMTP service here)",
    "Refused for good: a policy refused the session or the message (a block list at connect, "
    "spam or virus content after DATA), or the server offers no service to this client.", "",
    "Read who refused and why (filter, reason). A false positive needs an exception "
    "(whitelist) or a change of the rule; a listed client must get delisted."},
  BasicReplyCode{555, "MAIL FROM/RCPT TO parameters not recognized or not implemented",
    "The client sent an ESMTP parameter the server does not support.", "",
    "Check the parameter (the server must advertise an extension before a client uses it)."},
  // Extension codes commonly met in logs.
  BasicReplyCode{235, "Authentication successful (RFC 4954)",
    "AUTH succeeded.", "", "Nothing to do."},
  BasicReplyCode{334, "AUTH continue (RFC 4954)",
    "The server waits for the next step of the AUTH exchange.", "", "Nothing to do."},
  BasicReplyCode{432, "A password transition is needed (RFC 4954)",
    "The user must change or set up the password before authenticating this way.", "",
    "Have the user set the password, then retry."},
  BasicReplyCode{454, "TLS not available / temporary authentication failure (RFC 3207, 4954)",
    "STARTTLS could not be started (certificate or key problem), or authentication failed for "
    "a temporary reason (the password backend is unreachable).", "",
    "Check the TLS certificate and key (event=tls-handshake-failed), or the authentication "
    "backend."},
  BasicReplyCode{521, "Host does not accept mail (RFC 7504)",
    "This server accepts no mail at all.", "",
    "If mail is expected here, the MX records point at the wrong host."},
  BasicReplyCode{530, "Must issue a STARTTLS command first / Authentication required",
    "The server needs TLS or authentication before this command.", "",
    "Have the client use STARTTLS or authenticate, or relax the requirement for it."},
  BasicReplyCode{534, "Authentication mechanism is too weak (RFC 4954)",
    "The client chose an AUTH mechanism the server will not accept (PLAIN without TLS).", "",
    "Have the client use TLS or a stronger mechanism."},
  BasicReplyCode{535, "Authentication credentials invalid (RFC 4954)",
    "The user name or password is wrong.", "",
    "Check the account; many failures from one client can be a password-guessing attack."},
  BasicReplyCode{538, "Encryption required for requested authentication mechanism (RFC 4954)",
    "AUTH with this mechanism needs TLS first.", "", "Have the client use STARTTLS first."},
  BasicReplyCode{556, "Domain does not accept mail (RFC 7504)",
    "The recipient's domain accepts no mail (a null MX).", "",
    "The sender must use another address; nothing to do on the receiving side."},
};

constexpr std::array kEnhancedCodes = {
  // RFC 3463 3.1: X.0.0
  EnhancedStatusCode{0, 0, "245", "Other undefined status",
    "No more specific status applies (2.0.0: plain success, e.g. \"250 2.0.0 Ok: queued\").",
    "Read the reply text; it carries the detail."},
  // 3.2 Addressing status
  EnhancedStatusCode{1, 0, "245", "Other address status",
    "Something about an address (2.1.0: the sender address is accepted).",
    "Check the addresses in the log (from=, to=)."},
  EnhancedStatusCode{1, 1, "45", "Bad destination mailbox address",
    "The recipient's mailbox does not exist here (the part left of the @ is unknown).",
    "Check the recipient address for a typo; if it should exist, add the mailbox or alias on "
    "the MTA (for Postfix: the recipient maps behind reject_unlisted_recipient)."},
  EnhancedStatusCode{1, 2, "45", "Bad destination system address",
    "The recipient's domain does not exist or does not accept mail.",
    "Check the domain's DNS (MX and A records)."},
  EnhancedStatusCode{1, 3, "45", "Bad destination mailbox address syntax",
    "The recipient address is malformed.", "The sender must correct the address."},
  EnhancedStatusCode{1, 4, "45", "Destination mailbox address ambiguous",
    "The recipient address matches more than one mailbox.", "Make the address unique."},
  EnhancedStatusCode{1, 5, "2", "Destination address valid",
    "The recipient is accepted (\"250 2.1.5 Ok\").", "Nothing to do."},
  EnhancedStatusCode{1, 6, "45", "Destination mailbox has moved, no forwarding address",
    "The recipient used to exist here but has moved.", "The sender must update the address."},
  EnhancedStatusCode{1, 7, "45", "Bad sender's mailbox address syntax",
    "The sender address (MAIL FROM) is malformed.", "The sender must fix its address."},
  EnhancedStatusCode{1, 8, "45", "Bad sender's system address",
    "The sender's domain does not exist or cannot receive replies (4.1.8: its DNS lookup "
    "failed for now).",
    "Check the sender domain's DNS; a sender domain that does not resolve cannot get bounces."},
  EnhancedStatusCode{1, 9, "245", "Message relayed to non-compliant mailer (RFC 3886)",
    "The message was passed to a system that does not report delivery status.",
    "Nothing to do."},
  EnhancedStatusCode{1, 10, "5", "Recipient address has null MX (RFC 7505)",
    "The recipient's domain publishes a null MX: it receives no mail.",
    "The sender must use another address."},
  // 3.3 Mailbox status
  EnhancedStatusCode{2, 0, "245", "Other or undefined mailbox status",
    "The mailbox exists but something about it prevents delivery.",
    "Check the mailbox on the final server."},
  EnhancedStatusCode{2, 1, "45", "Mailbox disabled, not accepting messages",
    "The mailbox exists but is disabled (account suspended, blocked).",
    "Re-enable the account if mail should arrive."},
  EnhancedStatusCode{2, 2, "45", "Mailbox full",
    "The recipient is over quota.", "The recipient must free space, or raise the quota."},
  EnhancedStatusCode{2, 3, "45", "Message length exceeds administrative limit",
    "The message is bigger than this mailbox accepts.",
    "Raise the per-mailbox limit or ask the sender for a smaller message."},
  EnhancedStatusCode{2, 4, "45", "Mailing list expansion problem",
    "The recipient is a mailing list that could not be expanded.",
    "Check the list's configuration."},
  // 3.4 Mail system status
  EnhancedStatusCode{3, 0, "245", "Other or undefined mail system status",
    "The receiving mail system has a problem not covered by the other codes.",
    "Check the receiving MTA's own log around the same time."},
  EnhancedStatusCode{3, 1, "45", "Mail system full",
    "The receiving system is out of disk space for its queue.",
    "Free disk space on the MTA's queue file system."},
  EnhancedStatusCode{3, 2, "45", "System not accepting network messages",
    "The receiving host does not accept mail now (shutting down, maintenance).",
    "Bring the MTA back into service; senders retry a 4.3.2."},
  EnhancedStatusCode{3, 3, "45", "System not capable of selected features",
    "The message needs a feature the receiving system does not have.",
    "Check which extension the sender relied on."},
  EnhancedStatusCode{3, 4, "45", "Message too big for system",
    "The message is larger than the receiving system accepts at all (its size limit).",
    "Raise the size limit (Postfix message_size_limit, our limits) or have the sender send "
    "less."},
  EnhancedStatusCode{3, 5, "45", "System incorrectly configured",
    "The receiving system's configuration is broken (a mail loop to itself, a bad table).",
    "Fix the MTA's configuration; its own log names the problem."},
  EnhancedStatusCode{3, 6, "245", "Requested priority was changed (RFC 6710)",
    "The message was accepted with a different priority than requested.", "Nothing to do."},
  // 3.5 Network and routing status
  EnhancedStatusCode{4, 0, "45", "Other or undefined network or routing status",
    "Something between the systems failed: a connection, a lookup, a relay hop.",
    "Check connectivity to the next hop (for us: the MTA behind portcullis) and DNS."},
  EnhancedStatusCode{4, 1, "45", "No answer from host",
    "The next host did not answer the connection attempt.",
    "Check that the MTA behind portcullis is running and reachable."},
  EnhancedStatusCode{4, 2, "45", "Bad connection",
    "The connection was made but broke or timed out during the session.",
    "Check the network path, timeouts and the peer's log."},
  EnhancedStatusCode{4, 3, "45", "Directory server failure",
    "A lookup the decision depends on failed: DNS, LDAP, a DNSBL that did not answer.",
    "Check the resolver and the lookup service; senders retry a 4.4.3."},
  EnhancedStatusCode{4, 4, "45", "Unable to route",
    "No route to the destination (no MX or A record, or none usable).",
    "Check the destination domain's DNS and the relay's transport settings."},
  EnhancedStatusCode{4, 5, "45", "Mail system congestion",
    "The receiving system is overloaded (too many connections or messages).",
    "Raise the connection or rate limits if the load is legitimate; the sender retries."},
  EnhancedStatusCode{4, 6, "45", "Routing loop detected",
    "The message went around in a loop (too many Received: headers).",
    "Fix the forwarding or relay configuration that sends mail back."},
  EnhancedStatusCode{4, 7, "45", "Delivery time expired",
    "The message stayed in the sending queue too long and was given up.",
    "Find out why earlier attempts failed (the earlier 4xx replies)."},
  // 3.6 Mail delivery protocol status
  EnhancedStatusCode{5, 0, "245", "Other or undefined protocol status",
    "Something went wrong in the SMTP conversation itself.",
    "Check the command sequence in the session's transcript."},
  EnhancedStatusCode{5, 1, "45", "Invalid command",
    "The command is unknown or not allowed here.",
    "Usually a broken or non-SMTP client; see 500/502."},
  EnhancedStatusCode{5, 2, "45", "Syntax error",
    "The command was malformed.", "Check the command line in the log; see 500/501."},
  EnhancedStatusCode{5, 3, "45", "Too many recipients",
    "More recipients than the server takes in one transaction.",
    "Senders send the rest later (for 452); raise the recipient limit if it is too low."},
  EnhancedStatusCode{5, 4, "45", "Invalid command arguments",
    "The command's arguments are not valid (an unknown parameter, a bad value).",
    "Check the arguments in the log."},
  EnhancedStatusCode{5, 5, "45", "Wrong protocol version",
    "The client and the server disagree on the protocol (e.g. a pipelined or pre-greeting "
    "client, or a non-SMTP protocol).", "Usually a broken client or a scanner."},
  EnhancedStatusCode{5, 6, "45", "Authentication exchange line is too long (RFC 4954)",
    "An AUTH line was longer than the server accepts.", "The client must use a shorter one."},
  // 3.7 Message content or media status
  EnhancedStatusCode{6, 0, "245", "Other or undefined media error",
    "Something about the message content prevents delivery.",
    "Check the filter or MTA rule that looks at the content."},
  EnhancedStatusCode{6, 1, "45", "Media not supported",
    "The message uses a content type or encoding the destination does not support.",
    "The sender must send it in another form."},
  EnhancedStatusCode{6, 2, "45", "Conversion required and prohibited",
    "The message would need converting (e.g. 8-bit to 7-bit) but conversion is not allowed.",
    "Enable 8BITMIME on the path, or have the sender encode the message."},
  EnhancedStatusCode{6, 3, "45", "Conversion required but not supported",
    "The message would need a conversion the system cannot do.",
    "Same as 5.6.2: fix the path's capabilities or the message's encoding."},
  EnhancedStatusCode{6, 4, "245", "Conversion with loss performed",
    "The message was delivered, but converting it lost information.", "Nothing to do."},
  EnhancedStatusCode{6, 5, "45", "Conversion failed",
    "A needed conversion failed.", "Check the message's encoding."},
  EnhancedStatusCode{6, 6, "45", "Message content not available (RFC 4468)",
    "Referenced content (BURL) could not be fetched.", "Check the IMAP server BURL uses."},
  EnhancedStatusCode{6, 7, "45", "Non-ASCII addresses not permitted for that sender/recipient "
    "(RFC 6531)",
    "An internationalised (UTF-8) address was used where it is not allowed.",
    "Use an ASCII address, or enable SMTPUTF8 along the path."},
  EnhancedStatusCode{6, 8, "45", "UTF-8 string reply is required, but not permitted by the "
    "SMTP client (RFC 6531)",
    "The server needs to answer in UTF-8 but the client did not ask for SMTPUTF8.",
    "Enable SMTPUTF8 on the client."},
  EnhancedStatusCode{6, 9, "45", "UTF-8 header message cannot be transferred to one or more "
    "recipients (RFC 6531)",
    "A message with UTF-8 headers cannot go to a recipient whose server lacks SMTPUTF8.",
    "Enable SMTPUTF8 along the path, or send the message without UTF-8 headers."},
  EnhancedStatusCode{6, 10, "45", "UTF-8 message cannot be transferred (RFC 6531, in the "
    "registry beside X.6.9)",
    "A UTF-8 message could not be passed on to a server without SMTPUTF8.",
    "As for X.6.9."},
  // 3.8 Security or policy status
  EnhancedStatusCode{7, 0, "245", "Other or undefined security status",
    "A security or policy decision (2.7.0: authentication succeeded; 5.7.0 with 530: "
    "\"Must issue a STARTTLS command first\" or authentication required).",
    "Read the reason: a policy refused the client or the command."},
  EnhancedStatusCode{7, 1, "45", "Delivery not authorized, message refused",
    "A policy refused the message or the client: a block list (DNSBL), relay access denied, "
    "a spam or content rule, a sender not allowed to send here.",
    "Read who refused (filter=) and the reason. For relay denied, the client may not relay "
    "through you (authenticate it or add its network). For a block list, the sender must get "
    "delisted, or you add an exception for a client you trust."},
  EnhancedStatusCode{7, 2, "45", "Mailing list expansion prohibited",
    "The sender may not send to this mailing list.", "Check the list's posting policy."},
  EnhancedStatusCode{7, 3, "45", "Security conversion required but not possible",
    "The message would need a security conversion the system cannot do.",
    "Check the security features (signing, encryption) along the path."},
  EnhancedStatusCode{7, 4, "45", "Security features not supported",
    "The message asked for a security feature the system does not support.",
    "As for 5.7.3."},
  EnhancedStatusCode{7, 5, "45", "Cryptographic failure",
    "A cryptographic check (signature, decryption) failed.",
    "Check the keys and certificates involved."},
  EnhancedStatusCode{7, 6, "45", "Cryptographic algorithm not supported",
    "The message uses an algorithm the system does not support.",
    "Use a supported algorithm."},
  EnhancedStatusCode{7, 7, "45", "Message integrity failure",
    "The message was changed or damaged in transit.", "Check the path for a broken relay."},
  EnhancedStatusCode{7, 8, "45", "Authentication credentials invalid (RFC 4954)",
    "AUTH failed: wrong user name or password.",
    "Check the account; many failures from one client are likely password guessing."},
  EnhancedStatusCode{7, 9, "45", "Authentication mechanism is too weak (RFC 4954)",
    "The AUTH mechanism is not accepted (e.g. PLAIN over a connection without TLS).",
    "Have the client use TLS or a stronger mechanism."},
  EnhancedStatusCode{7, 10, "45", "Encryption needed (RFC 5248)",
    "The command needs an encrypted connection.", "Have the client use STARTTLS."},
  EnhancedStatusCode{7, 11, "45", "Encryption required for requested authentication mechanism "
    "(RFC 4954)",
    "The AUTH mechanism needs TLS first; TLS is required.",
    "Have the client use STARTTLS before AUTH."},
  EnhancedStatusCode{7, 12, "45", "A password transition is needed (RFC 4954)",
    "The user must set or change the password first.", "Have the user set the password."},
  EnhancedStatusCode{7, 13, "45", "User account disabled (RFC 5248)",
    "The account exists but is disabled.", "Re-enable the account if it should send."},
  EnhancedStatusCode{7, 14, "45", "Trust relationship required (RFC 5248)",
    "The servers need a trust relationship (e.g. client certificates) they do not have.",
    "Set up the trust (certificates, allow lists) between the two systems."},
  EnhancedStatusCode{7, 15, "45", "Priority level is too low (RFC 6710)",
    "The message's priority is too low for the server to accept now.",
    "Nothing; retry later or with another priority."},
  EnhancedStatusCode{7, 16, "45", "Message is too big for the specified priority (RFC 6710)",
    "Large messages are not taken at this priority.", "Send with another priority."},
  EnhancedStatusCode{7, 17, "5", "Mailbox owner has changed (RFC 7293)",
    "The recipient address now belongs to someone else (RRVS).",
    "The sender must update the address."},
  EnhancedStatusCode{7, 18, "5", "Domain owner has changed (RFC 7293)",
    "The recipient's domain changed hands (RRVS).", "The sender must update the address."},
  EnhancedStatusCode{7, 19, "5", "RRVS test cannot be completed (RFC 7293)",
    "The server cannot check the RRVS condition the sender asked for.",
    "Send without RRVS."},
  EnhancedStatusCode{7, 20, "5", "No passing DKIM signature found (RFC 7372)",
    "The message has no valid DKIM signature and the receiver requires one.",
    "The sender must sign its mail with DKIM (check its keys and DNS records)."},
  EnhancedStatusCode{7, 21, "5", "No acceptable DKIM signature found (RFC 7372)",
    "DKIM signatures are present but none meets the receiver's policy.",
    "The sender must sign with an acceptable domain or algorithm."},
  EnhancedStatusCode{7, 22, "5", "No valid author-matched DKIM signature found (RFC 7372)",
    "No valid DKIM signature matches the From: domain.",
    "The sender must sign with the From: domain (DMARC alignment)."},
  EnhancedStatusCode{7, 23, "5", "SPF validation failed (RFC 7372)",
    "The sending host is not allowed by the sender domain's SPF record.",
    "The sender domain's owner must add the host to its SPF record, or the mail is forged."},
  EnhancedStatusCode{7, 24, "45", "SPF validation error (RFC 7372)",
    "The SPF check could not be completed (4.7.24: a DNS error; 5.7.24: a broken record).",
    "The sender domain's owner must fix its SPF record; a DNS problem may be on either side."},
  EnhancedStatusCode{7, 25, "45", "Reverse DNS validation failed (RFC 7372)",
    "The client's IP has no reverse DNS name, or the name does not resolve back to the IP.",
    "The sender's admin must set a matching PTR record; or exempt the client if you trust it."},
  EnhancedStatusCode{7, 26, "45", "Multiple authentication checks failed (RFC 7372)",
    "Several checks (SPF, DKIM, reverse DNS...) failed together.",
    "The sender must fix its authentication (SPF, DKIM, PTR)."},
  EnhancedStatusCode{7, 27, "5", "Sender address has null MX (RFC 7505)",
    "The sender's domain publishes a null MX, so bounces could never reach it.",
    "The sender must use an address of a domain that receives mail."},
  EnhancedStatusCode{7, 28, "45", "Mail flood detected (RFC 8904)",
    "The sender is sending an unusual volume of similar mail.",
    "Check whether the sender is compromised; raise the rate limit if the volume is fine."},
  EnhancedStatusCode{7, 29, "5", "ARC validation failure (RFC 8617)",
    "The ARC chain of a forwarded message did not validate.",
    "The forwarding system must fix its ARC signing."},
  EnhancedStatusCode{7, 30, "5", "REQUIRETLS support required (RFC 8689)",
    "The message requires TLS on every hop, and this path cannot guarantee it.",
    "Enable REQUIRETLS along the path, or send without it."},
};
// clang-format on

}  // namespace

ReplyClass replyClassOf(int code) {
  if (code < 200 || code > 599) return ReplyClass::kInvalid;
  switch (code / 100) {
    case 2:
      return ReplyClass::kSuccess;
    case 3:
      return ReplyClass::kIntermediate;
    case 4:
      return ReplyClass::kTransient;
    default:
      return ReplyClass::kPermanent;
  }
}

std::string_view replyClassName(ReplyClass c) {
  switch (c) {
    case ReplyClass::kSuccess:
      return "success";
    case ReplyClass::kIntermediate:
      return "intermediate (the server waits for more)";
    case ReplyClass::kTransient:
      return "transient failure (4xx: try again later)";
    case ReplyClass::kPermanent:
      return "permanent failure (5xx: do not retry as is)";
    case ReplyClass::kInvalid:
      break;
  }
  return "not a valid SMTP reply code";
}

std::string_view replyClassNext(ReplyClass c) {
  switch (c) {
    case ReplyClass::kSuccess:
      return "The client goes on with the next command.";
    case ReplyClass::kIntermediate:
      return "The client sends what the server waits for (the message after DATA, the next "
             "AUTH step).";
    case ReplyClass::kTransient:
      return "The sending MTA keeps the message in its queue and retries later (typically for "
             "up to 5 days, Postfix maximal_queue_lifetime) before it gives up and bounces. A "
             "mail client shows an error and the user may send again.";
    case ReplyClass::kPermanent:
      return "The sending MTA does not retry: it returns the message to its sender with a "
             "bounce (a delivery status notification carrying this reply). A mail client shows "
             "the error to the user.";
    case ReplyClass::kInvalid:
      break;
  }
  return "RFC 5321 4.2: a client must treat a code it does not know by its first digit; one "
         "that does not start with 2 to 5 is a protocol error.";
}

const BasicReplyCode* findBasicCode(int code) {
  const auto* it = std::find_if(kBasicCodes.begin(), kBasicCodes.end(),
                                [code](const BasicReplyCode& e) { return e.code == code; });
  return it == kBasicCodes.end() ? nullptr : &*it;
}

const EnhancedStatusCode* findEnhancedCode(int cls, int subject, int detail) {
  if (cls != 2 && cls != 4 && cls != 5) return nullptr;
  const char classDigit = static_cast<char>('0' + cls);
  for (const auto& e : kEnhancedCodes) {
    if (e.subject == subject && e.detail == detail) {
      return e.classes.find(classDigit) == std::string_view::npos ? nullptr : &e;
    }
  }
  return nullptr;
}

const EnhancedStatusCode* findEnhancedSubject(int subject) {
  for (const auto& e : kEnhancedCodes) {
    if (e.subject == subject && e.detail == 0) return &e;
  }
  return nullptr;
}

namespace {

std::optional<int> parseNumber(std::string_view s, std::size_t maxDigits) {
  if (s.empty() || s.size() > maxDigits) return std::nullopt;
  int v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

void appendWrapped(std::string& out, std::string_view indent, std::string_view text) {
  // Wrapped at about 96 columns for a terminal; words are never split.
  constexpr std::size_t kWidth = 96;
  std::size_t col = 0;
  bool lineStart = true;
  while (!text.empty()) {
    const std::size_t sp = text.find(' ');
    const std::string_view word = text.substr(0, sp);
    text.remove_prefix(sp == std::string_view::npos ? text.size() : sp + 1);
    if (word.empty()) continue;
    if (!lineStart && col + 1 + word.size() > kWidth) {
      out += '\n';
      lineStart = true;
    }
    if (lineStart) {
      out += indent;
      out += "    ";
      col = indent.size() + 4;
      lineStart = false;
    } else {
      out += ' ';
      ++col;
    }
    out += word;
    col += word.size();
  }
  if (!lineStart) out += '\n';
}

}  // namespace

std::optional<EnhancedCode> parseEnhancedCode(std::string_view s) {
  const std::size_t a = s.find('.');
  if (a == std::string_view::npos) return std::nullopt;
  const std::size_t b = s.find('.', a + 1);
  if (b == std::string_view::npos) return std::nullopt;
  const auto cls = parseNumber(s.substr(0, a), 1);
  const auto subject = parseNumber(s.substr(a + 1, b - a - 1), 3);
  const auto detail = parseNumber(s.substr(b + 1), 3);
  if (!cls || !subject || !detail) return std::nullopt;
  if (*cls != 2 && *cls != 4 && *cls != 5) return std::nullopt;
  return EnhancedCode{*cls, *subject, *detail};
}

std::optional<CodeSpec> parseCodeSpec(std::string_view s) {
  s = trim(s);
  CodeSpec spec;
  const std::size_t sep = s.find_first_of(" -,\t");
  std::string_view first = s.substr(0, sep);
  std::string_view rest =
      sep == std::string_view::npos ? std::string_view() : trim(s.substr(sep + 1));
  if (first.find('.') == std::string_view::npos) {
    const auto basic = parseNumber(first, 3);
    if (!basic || first.size() != 3 || *basic < 200 || *basic > 599) return std::nullopt;
    spec.basic = *basic;
  } else {
    rest = s;  // only an enhanced code
  }
  if (!rest.empty()) {
    spec.enhanced = parseEnhancedCode(rest);
    if (!spec.enhanced) return std::nullopt;
  }
  return spec;
}

std::string describeCode(const CodeSpec& spec, std::string_view indent) {
  std::string out;
  ReplyClass cls = ReplyClass::kInvalid;
  if (spec.basic) {
    cls = replyClassOf(*spec.basic);
  } else if (spec.enhanced) {
    cls = replyClassOf(spec.enhanced->cls * 100);
  }
  if (spec.basic) {
    const BasicReplyCode* b = findBasicCode(*spec.basic);
    out += indent;
    out += std::to_string(*spec.basic);
    out += "  ";
    out += b ? b->text : "(not a code in the table; read by its first digit)";
    out += '\n';
    if (b) appendWrapped(out, indent, b->meaning);
  }
  std::string_view adminText;
  if (spec.enhanced) {
    const EnhancedCode& e = *spec.enhanced;
    const std::string code =
        std::to_string(e.cls) + "." + std::to_string(e.subject) + "." + std::to_string(e.detail);
    const EnhancedStatusCode* entry = findEnhancedCode(e.cls, e.subject, e.detail);
    out += indent;
    out += code;
    out += "  ";
    if (entry) {
      out += entry->title;
      out += '\n';
      appendWrapped(out, indent, entry->meaning);
    } else if (const EnhancedStatusCode* subj = findEnhancedSubject(e.subject)) {
      out += "(not in the table; its subject X.";
      out += std::to_string(e.subject);
      out += ": ";
      out += subj->title;
      out += ")\n";
      entry = subj;
    } else {
      out += "(unknown subject; read by its class)\n";
    }
    if (spec.basic && e.cls != *spec.basic / 100) {
      appendWrapped(out, indent,
                    "Note: the enhanced code's class differs from the reply code's first digit "
                    "(RFC 3463 2 says they must agree); clients act on the reply code.");
    }
    adminText = entry ? entry->admin : std::string_view();
  }
  if (adminText.empty() && spec.basic) {
    if (const BasicReplyCode* b = findBasicCode(*spec.basic)) adminText = b->admin;
  }
  out += indent;
  out += "Kind: ";
  out += replyClassName(cls);
  out += '\n';
  out += indent;
  out += "Sender next:\n";
  const BasicReplyCode* b = spec.basic ? findBasicCode(*spec.basic) : nullptr;
  appendWrapped(out, indent, b && !b->next.empty() ? b->next : replyClassNext(cls));
  if (!adminText.empty()) {
    // The enhanced code's advice when there is one: it is the more specific.
    out += indent;
    out += "Admin:\n";
    appendWrapped(out, indent, adminText);
  }
  return out;
}

}  // namespace portcullis
