#!/usr/bin/env python3
"""Running as an unprivileged user (issue 13, privileges): portcullis binds its listener and
opens its spool and log as root, writes its pid file, then becomes `user:`/`group:` for good,
and still relays (spool files included) to the real Postfix. --check-config refuses an unknown
user or group, and a group without a user, with exit status 2 and the key in the message.
"""

import grp
import os
import pwd
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import HarnessTestCase, Portcullis, Postfix, make_message, send_mail  # noqa: E402


def ids(pid):
    """(uids, gids, groups) from /proc/PID/status: real, effective, saved, filesystem."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    return (fields["Uid"].split(), fields["Gid"].split(), fields["Groups"].split())


@unittest.skipUnless(os.geteuid() == 0, "the drop needs root")
class PrivilegesTest(HarnessTestCase):
    def setUp(self):
        self.pf = self.start(Postfix())
        self.nobody = pwd.getpwnam("nobody")
        self.nogroup = grp.getgrgid(self.nobody.pw_gid)

    def public_dir(self):
        # The spool must be reachable by the dropped user: not under the harness's 0700 tmp.
        d = tempfile.mkdtemp(prefix="portcullis-priv-")
        os.chmod(d, 0o755)
        self.addCleanup(lambda: os.system(f"rm -rf '{d}'"))
        return d

    def test_drops_to_the_user_after_binding_and_still_relays(self):
        d = self.public_dir()
        pid_file = os.path.join(d, "portcullis.pid")
        pc = self.start(Portcullis(upstream=self.pf, config={
            "user": "nobody",
            "pid_file": pid_file,
            # Every message goes to a spool file: the dropped user must be able to write them.
            "spool": {"directory": os.path.join(d, "spool"), "memory_limit": "1K"}}))
        pc.wait_for_log(r"event=privileges user=nobody uid=%d group=%s gid=%d"
                        % (self.nobody.pw_uid, self.nogroup.gr_name, self.nobody.pw_gid))
        pid = pc.proc.pid
        uids, gids, groups = ids(pid)
        self.assertEqual(uids, [str(self.nobody.pw_uid)] * 4)
        self.assertEqual(gids, [str(self.nobody.pw_gid)] * 4)
        self.assertEqual(groups, [str(self.nobody.pw_gid)])
        with open(pid_file) as f:
            self.assertEqual(f.read(), f"{pid}\n")
        self.assertEqual(os.stat(os.path.join(d, "spool")).st_uid, self.nobody.pw_uid)
        msg = make_message(subject="as nobody", size=20000)
        send_mail("127.0.0.1", pc.port, msg=msg)
        [got] = self.pf.messages(1, timeout=30)
        self.assertIn(b"Subject: as nobody", got)

    def test_an_explicit_group(self):
        d = self.public_dir()
        pc = self.start(Portcullis(upstream=self.pf, config={
            "user": "nobody", "group": "mail", "spool": {"directory": os.path.join(d, "spool")}}))
        mail = grp.getgrnam("mail")
        pc.wait_for_log(r"event=privileges user=nobody uid=\d+ group=mail gid=%d" % mail.gr_gid)
        _, gids, groups = ids(pc.proc.pid)
        self.assertEqual(gids, [str(mail.gr_gid)] * 4)
        self.assertEqual(groups, [str(mail.gr_gid)])

    def check_config(self, config, expect):
        pc = self.start(Portcullis(upstream=self.pf, config=config, args=("--check-config",),
                                   expect_exit=2, wait_ready=False))
        self.assertEqual(pc.wait_exit(), 2)
        self.assertIn(expect, pc.log_text())

    def test_check_config_refuses_unknown_names(self):
        self.check_config({"user": "no-such-user-here"},
                          'config error: user: no such user "no-such-user-here"')
        self.check_config({"user": "nobody", "group": "no-such-group-here"},
                          'config error: user: no such group "no-such-group-here"')
        self.check_config({"group": "mail"}, "group: needs user:")
        self.check_config({"pid_file": "relative.pid"}, "pid_file: must be an absolute path")


if __name__ == "__main__":
    unittest.main()
