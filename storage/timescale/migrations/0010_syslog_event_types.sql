-- Event types the syslog parsers (ingest/syslog) produce, in the catalogue so R3 accepts them.
-- sshd's own "Failed password" and "Accepted" lines are the built-in user_login type.
-- ON CONFLICT: an admin may have added a type of the same name at run time; theirs is kept.
INSERT INTO event_types (event_type, description, ocsf_class, builtin) VALUES
    ('ssh_invalid_user',      'sshd: a login attempt for an account that does not exist',            'Authentication [3002]', true),
    ('ssh_connection_closed', 'sshd: the client disconnected before authenticating',                  'Authentication [3002]', true),
    ('ssh_break_in_attempt',  'sshd: the client''s address and reverse DNS name disagree (POSSIBLE BREAK-IN ATTEMPT)',
                                                                                                       'Network Activity [4001]', true),
    ('auth_failure',          'A PAM authentication failure of a service other than su and sudo',     'Authentication [3002]', true),
    ('sudo',                  'A command run with sudo, or refused',                                   'Authorize Session [3003]', true),
    ('su',                    'A switch of user with su, or a refused one',                            'Authorize Session [3003]', true),
    ('syslog_message',        'A syslog line no parser recognised, kept whole',                        'Base Event [0]', true)
ON CONFLICT (event_type) DO NOTHING;
