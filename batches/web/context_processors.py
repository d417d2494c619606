from django.conf import settings


def batchsite(request) -> dict:
    """Values every page needs: whether answers come from the demo model, and the upload limit."""
    return {
        "demo_mode": settings.DEMO_MODE,
        "max_upload_mb": settings.BATCH_MAX_UPLOAD_MB,
        "max_files": settings.BATCH_MAX_FILES,
        "max_file_mb": settings.BATCH_MAX_FILE_MB,
    }
