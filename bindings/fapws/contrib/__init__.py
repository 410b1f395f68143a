"""FAPWS3's contrib pieces in Python 3 form: views.Staticfile, zip.Gzip,
log.Log and multipart."""
