"""Where documents come from besides the local disk: web sites, IMAP mailboxes."""
